// Max calibrator: the running max of |x| per amax slot of a quantizer spec over calibration
// batches (ModelOpt's MaxCalibrator). Activations are collected batch by batch during the
// calibration pass; weights are calibrated from the weights themselves (one collect()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/error.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/granularity.hpp"
#include "aq/quant/quantizer.hpp"

namespace aq::calib {

// A batch is a row-major [rows x cols] matrix. The amax layout depends only on the spec's
// granularity: per-tensor accepts any shape; per-channel and per-block need the same layout
// (rows, and cols for blocks) in every batch. Merging two calibrators gives the same amax as
// calibrating one on the concatenation of their batches (max is associative and exact).
template <quant::quantizer_spec Q>
class max_calibrator {
 public:
  using spec = Q;
  using granularity = typename Q::granularity_type;

  explicit max_calibrator(std::string name = "tensor") : name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  // A calibrator that never saw data has no amax (ModelOpt leaves _amax unset then).
  bool has_data() const { return seen_; }

  std::size_t batches() const { return batches_; }

  void collect(std::span<const float> batch, std::int64_t rows, std::int64_t cols) {
    std::vector<float> local = quant::compute_amax<granularity>(batch, rows, cols, name_ + " (batch " +
                                                                std::to_string(batches_) + ")");
    if (!seen_) {
      amax_ = std::move(local);
      rows_ = rows;
      cols_ = cols;
      seen_ = true;
    } else {
      check_layout(rows, cols, "batch " + std::to_string(batches_));
      for (std::size_t i = 0; i < amax_.size(); ++i) amax_[i] = amax_[i] < local[i] ? local[i] : amax_[i];
    }
    ++batches_;
  }

  // Combines another calibrator of the same tensor (e.g. another data shard).
  void merge(const max_calibrator& other) {
    if (!other.seen_) return;
    if (!seen_) {
      amax_ = other.amax_;
      rows_ = other.rows_;
      cols_ = other.cols_;
      seen_ = true;
    } else {
      check_layout(other.rows_, other.cols_, "merged calibrator '" + other.name_ + "'");
      for (std::size_t i = 0; i < amax_.size(); ++i) amax_[i] = amax_[i] < other.amax_[i] ? other.amax_[i] : amax_[i];
    }
    batches_ += other.batches_;
  }

  // The collected amax, one value per slot of the granularity. Throws if no data was seen.
  std::span<const float> amax() const {
    require_data("amax");
    return amax_;
  }

  // ModelOpt keeps amax in the model dtype (bf16); rounding the max equals the max of the
  // bf16-rounded inputs because round-to-nearest-even is monotone.
  std::vector<float> amax_bf16() const {
    require_data("amax_bf16");
    std::vector<float> rounded(amax_.size());
    for (std::size_t i = 0; i < amax_.size(); ++i) rounded[i] = round_to_bf16(amax_[i]);
    return rounded;
  }

  // ModelOpt's _amax shape: [] per-tensor, [rows, 1] per-channel, [blocks, 1] per-block.
  std::vector<std::int64_t> amax_shape() const {
    require_data("amax_shape");
    return granularity::amax_shape(rows_, cols_);
  }

 private:
  void require_data(std::string_view what) const {
    if (!seen_) throw error(name_ + ": " + std::string(what) + " requested but the max calibrator never saw data");
  }

  // Per-channel and per-block slots belong to positions of one matrix layout; a per-tensor
  // amax accepts batches of any shape (e.g. a different number of tokens).
  void check_layout(std::int64_t rows, std::int64_t cols, const std::string& where) const {
    if (granularity::depends_on_shape && (rows != rows_ || cols != cols_)) {
      throw error(name_ + ": " + where + " is " + std::to_string(rows) + " x " + std::to_string(cols) + ", expected " +
                  std::to_string(rows_) + " x " + std::to_string(cols_) + " as before (" +
                  quant::granularity_label<granularity>() + " amax)");
    }
  }

  std::string name_;
  std::vector<float> amax_;
  std::int64_t rows_ = 0;
  std::int64_t cols_ = 0;
  std::size_t batches_ = 0;
  bool seen_ = false;
};

// Weights are calibrated from the weights themselves: one collect over the whole matrix.
template <quant::quantizer_spec Q>
std::vector<float> calibrate_weight(std::span<const float> weight, std::int64_t rows, std::int64_t cols,
                                    std::string_view name = "weight") {
  max_calibrator<Q> calibrator{std::string(name)};
  calibrator.collect(weight, rows, cols);
  return std::vector<float>(calibrator.amax().begin(), calibrator.amax().end());
}

}  // namespace aq::calib
