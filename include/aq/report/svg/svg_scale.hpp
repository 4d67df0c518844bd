// Maps data values to plot pixels and picks the ticks to label: a linear scale with "nice" ticks
// (steps of 1, 2 or 5 times a power of ten) and a symmetric-log scale for quantities that are
// zero for the unquantized model yet span several decades for quantized ones (scores, KL).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace aq::io::svg {

// A tick: the data value and the text written next to it.
struct tick {
  double value = 0.0;
  std::string label;
};

// Short tick text, the same on every platform: plain decimals from 0.0001 to 99999 ("0.001",
// "2.5", "1000"), three significant digits with an exponent outside ("1e-05", "2.5e+06").
inline std::string tick_label(double value) {
  if (value == 0.0) return "0";
  char buffer[32];
  const double magnitude = std::fabs(value);
  std::snprintf(buffer, sizeof buffer, magnitude >= 1e-4 && magnitude < 1e5 ? "%.6g" : "%.3g", value);
  return buffer;
}

// The nice step (1, 2 or 5 x 10^k) that cuts `span` into about `count` intervals.
inline double nice_step(double span, int count) {
  if (!(span > 0.0)) return 1.0;
  const double raw = span / std::max(count, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  const double nice = fraction <= 1.0 ? 1.0 : fraction <= 2.0 ? 2.0 : fraction <= 5.0 ? 5.0 : 10.0;
  return nice * magnitude;
}

// value -> pixel along one axis, linear. The domain is widened to whole nice steps, so the
// axis ends on a labelled tick.
class linear_scale {
 public:
  linear_scale(double lo, double hi, double pixel_lo, double pixel_hi, int tick_count = 6)
      : pixel_lo_(pixel_lo), pixel_hi_(pixel_hi) {
    if (!(hi > lo)) {  // a single value: give it room on both sides
      lo -= 1.0;
      hi += 1.0;
    }
    step_ = nice_step(hi - lo, tick_count);
    lo_ = std::floor(lo / step_) * step_;
    hi_ = std::ceil(hi / step_) * step_;
  }

  double operator()(double value) const { return pixel_lo_ + (value - lo_) / (hi_ - lo_) * (pixel_hi_ - pixel_lo_); }
  double lo() const { return lo_; }
  double hi() const { return hi_; }

  std::vector<tick> ticks() const {
    std::vector<tick> out;
    const long count = std::lround((hi_ - lo_) / step_);
    for (long i = 0; i <= count; ++i) {
      double v = lo_ + static_cast<double>(i) * step_;
      if (std::fabs(v) < step_ * 1e-9) v = 0.0;  // no "-1.1e-16" labels from the sum
      out.push_back({v, tick_label(v)});
    }
    return out;
  }

 private:
  double lo_ = 0.0, hi_ = 1.0, step_ = 1.0;
  double pixel_lo_, pixel_hi_;
};

// value -> pixel for non-negative data where 0 matters and positive values span decades:
// t(v) = log10(1 + v / c), linear near 0 and logarithmic above the threshold c. c is the decade
// at or below the smallest positive value, so the smallest point sits one decade-step above 0 and
// every larger decade gets about equal room. A plain log scale would have to drop the zeros (the
// unquantized model, NONE recipes) or park them at an arbitrary floor; symlog keeps them at 0.
// Negative values (not expected: scores are clamped, KL is >= 0) are drawn at 0.
class symlog_scale {
 public:
  symlog_scale(const std::vector<double>& values, double pixel_lo, double pixel_hi)
      : pixel_lo_(pixel_lo), pixel_hi_(pixel_hi) {
    double smallest = 0.0, largest = 0.0;
    for (const double v : values) {
      if (v > 0.0 && (smallest == 0.0 || v < smallest)) smallest = v;
      largest = std::max(largest, v);
    }
    threshold_ = smallest > 0.0 ? std::pow(10.0, std::floor(std::log10(smallest))) : 1.0;
    decades_ = largest > threshold_ ? std::max(1, static_cast<int>(std::ceil(std::log10(largest / threshold_) - 1e-9)))
                                    : 1;
    t_max_ = transform(threshold_ * std::pow(10.0, decades_));
  }

  double operator()(double value) const {
    return pixel_lo_ + transform(std::max(value, 0.0)) / t_max_ * (pixel_hi_ - pixel_lo_);
  }
  double threshold() const { return threshold_; }

  // 0, then decades from the threshold up; every second or third decade when there are many.
  std::vector<tick> ticks() const {
    std::vector<tick> out{{0.0, "0"}};
    const int stride = decades_ <= 6 ? 1 : decades_ <= 12 ? 2 : 3;
    for (int k = 0; k <= decades_; k += stride) {
      const double v = threshold_ * std::pow(10.0, k);
      out.push_back({v, tick_label(v)});
    }
    return out;
  }

 private:
  double transform(double v) const { return std::log10(1.0 + v / threshold_); }

  double threshold_ = 1.0;
  int decades_ = 1;
  double t_max_ = 1.0;
  double pixel_lo_, pixel_hi_;
};

// value -> [0, 1] on a log scale between two positive bounds; values at or below `lo` give 0
// (the heatmap's colour: scores of 0 or below the floor share the lowest colour).
class log_unit_scale {
 public:
  log_unit_scale(double lo, double hi) : log_lo_(std::log10(lo)), log_hi_(std::log10(std::max(hi, lo * 10.0))) {}

  double operator()(double value) const {
    if (!(value > 0.0)) return 0.0;
    return std::clamp((std::log10(value) - log_lo_) / (log_hi_ - log_lo_), 0.0, 1.0);
  }
  double lo() const { return std::pow(10.0, log_lo_); }
  double hi() const { return std::pow(10.0, log_hi_); }

 private:
  double log_lo_, log_hi_;
};

}  // namespace aq::io::svg
