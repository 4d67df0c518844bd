// The heatmap's colour map: viridis (perceptually uniform, readable in grey and by most colour-
// blind readers), interpolated linearly between nine of its published anchor colours.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>

namespace aq::io::svg {

// t in [0, 1] (clamped) -> "#rrggbb".
inline std::string viridis(double t) {
  static constexpr std::array<std::array<int, 3>, 9> anchors{{{68, 1, 84},
                                                              {71, 44, 122},
                                                              {59, 81, 139},
                                                              {44, 113, 142},
                                                              {33, 144, 141},
                                                              {39, 173, 129},
                                                              {92, 200, 99},
                                                              {170, 220, 50},
                                                              {253, 231, 37}}};
  const double position = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * (anchors.size() - 1);
  const std::size_t i = std::min(static_cast<std::size_t>(position), anchors.size() - 2);
  const double f = position - static_cast<double>(i);
  char buffer[8];
  int rgb[3];
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<int>(std::lround(anchors[i][c] + f * (anchors[i + 1][c] - anchors[i][c])));
  }
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return buffer;
}

}  // namespace aq::io::svg
