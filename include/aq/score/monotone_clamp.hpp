// Monotone clamp of a group's raw scores along its candidate list (ascending effective bits,
// NONE last): a less aggressive recipe never scores above a more aggressive one. The step between
// scoring and the allocator (ModelOpt's candidate_stats); two ModelOpt versions differ in it.
#pragma once

#include <limits>
#include <span>
#include <string_view>
#include <vector>

namespace aq::score {

enum class clamp_rule {
  // ModelOpt 0.39 (produced the reference data): out[i] = min(raw[i], raw[i-1]), i.e. each score
  // is clamped by the RAW score before it only.
  modelopt_0_39,
  // ModelOpt 0.40: out[i] = min(raw[i], out[i-1]), a running minimum.
  modelopt_0_40,
};

constexpr std::string_view to_string(clamp_rule rule) {
  return rule == clamp_rule::modelopt_0_39 ? "modelopt-0.39" : "modelopt-0.40";
}

// Both rules agree for two candidates (one recipe + NONE) and whenever raw is non-increasing.
inline std::vector<double> monotone_clamp(std::span<const double> raw, clamp_rule rule = clamp_rule::modelopt_0_39) {
  std::vector<double> out;
  out.reserve(raw.size());
  double previous = std::numeric_limits<double>::infinity();
  for (const double score : raw) {
    const double clamped = score < previous ? score : previous;
    out.push_back(clamped);
    previous = rule == clamp_rule::modelopt_0_39 ? score : clamped;
  }
  return out;
}

}  // namespace aq::score
