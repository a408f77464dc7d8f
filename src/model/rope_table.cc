// Rotary table construction, including Hugging Face's llama3 scaling of the inverse frequencies.
#include "model/rope_table.h"

#include <cmath>

#include "core/error.h"

namespace bitexact::model {

std::vector<float> make_rope_table(const io::ModelConfig& c, int max_positions) {
  const int64_t dh = c.head_dim, half = dh / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(dh));
  const io::RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`, short
    // ones kept, and the band between interpolated smoothly.
    const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    for (auto& f : inv_freq) {
      double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = float(f / s.factor);
      } else if (wavelen >= high_wavelen) {
        double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        f = float((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  } else if (!s.type.empty() && s.type != "default") {
    fail(ErrorKind::kUnsupported, "rope_scaling type `" + s.type + "` is not supported");
  }
  std::vector<float> table(size_t(max_positions) * size_t(dh));
  for (int p = 0; p < max_positions; ++p) {
    float* row = table.data() + size_t(p) * size_t(dh);
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(p) * inv_freq[i];
      row[i] = std::cos(angle);
      row[half + i] = std::sin(angle);
    }
  }
  return table;
}

}  // namespace bitexact::model
