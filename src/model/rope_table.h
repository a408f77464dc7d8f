// The rotary cos/sin table [max_positions, head_dim], computed once on the host in f32 the way
// Hugging Face computes it (inv_freq = 1 / theta^(2i/d), angle = pos * inv_freq), with llama3
// frequency scaling when configured. Every device rotates with these same values.
#pragma once

#include <vector>

#include "io/model_config.h"

namespace bitexact::model {

std::vector<float> make_rope_table(const io::ModelConfig& config, int max_positions);

}  // namespace bitexact::model
