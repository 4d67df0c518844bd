// Rotary position embedding frequencies, inv[j] = 1 / theta^(2j / dim), rounded as torch computes
// them: host math that both backends' rope tables start from (the text decoder's M-RoPE and the
// vision tower's 2-D rope), so that CPU and GPU rotate by the same float angles.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace aq {

// inv[j] = 1 / theta^(2j / dim), j < dim/2, rounded as torch computes it in fp32.
inline std::vector<float> rope_inv_freq(std::int64_t dim, double theta) {
  std::vector<float> inv(static_cast<std::size_t>(dim / 2));
  for (std::int64_t j = 0; j < dim / 2; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(dim);
    const float power = static_cast<float>(std::pow(theta, static_cast<double>(exponent)));
    inv[static_cast<std::size_t>(j)] = 1.0f / power;
  }
  return inv;
}

}  // namespace aq
