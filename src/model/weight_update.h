// Weight updates without a restart: reading a folder of safetensors with the current model's
// tensor names and shapes (an RL trainer's checkpoint), to be swapped in by
// Model::replace_weights. The engine makes the swap atomic for requests (engine.h).
#pragma once

#include <string>

#include "model/weights.h"

namespace bitexact::model {

// Reads `dir` (a .safetensors file, an index, or a folder holding either; any config.json is
// not read: `config` applies) into weights for `config` on `device`. Every tensor the model uses
// must be there with its shape, and nothing else: a missing, unused (misnamed) or misshapen
// tensor throws Error(kFormat) naming it; a missing or corrupt file throws as
// io::SafetensorsCheckpoint::open does. The result owns copies of the tensors, so the files may
// be overwritten as soon as this returns.
ModelWeights load_weight_update(const std::string& dir, const io::ModelConfig& config,
                                Device device);

}  // namespace bitexact::model
