// GPU time per kernel class (GEMM, attention, norms/RoPE, elementwise, loss, amax, fake-quant,
// recipe GEMMs, score) measured with CUDA events around each region on the model's stream; the
// model and the observers record into one profile, resolved after each synchronised run.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "aq/backend/cuda/kernels/check.hpp"
#include "aq/core/error.hpp"

namespace aq::cuda {

enum class kernel_class : int { gemm, attention, norm_rope, elementwise, loss, amax, fake_quant, score_gemm, score, count };

inline const char* kernel_class_name(kernel_class c) {
  constexpr std::array<const char*, static_cast<std::size_t>(kernel_class::count)> names{
      "model GEMMs", "attention", "norms + RoPE", "elementwise", "loss (CE)", "amax (calib)", "fake-quant X/W",
      "recipe GEMMs", "score reduce"};
  return names.at(static_cast<std::size_t>(c));
}

// Events are created on first use and reused after each resolve(); regions must not nest.
class kernel_profile {
 public:
  kernel_profile() = default;
  kernel_profile(const kernel_profile&) = delete;
  kernel_profile& operator=(const kernel_profile&) = delete;
  ~kernel_profile() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  void begin(kernel_class c, cudaStream_t s) {
    classes_.push_back(c);
    AQ_CUDA_CHECK(cudaEventRecord(event(used_++), s));
  }
  void end(cudaStream_t s) { AQ_CUDA_CHECK(cudaEventRecord(event(used_++), s)); }

  // Waits for the last region and adds every region's time to its class.
  void resolve() {
    if (used_ == 0) return;
    if (used_ % 2 != 0) throw error("kernel_profile: a region was opened but not closed");
    AQ_CUDA_CHECK(cudaEventSynchronize(events_[used_ - 1]));
    for (std::size_t i = 0; i < used_; i += 2) {
      float ms = 0.0f;
      AQ_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      const auto c = static_cast<std::size_t>(classes_[i / 2]);
      ms_[c] += ms;
      calls_[c] += 1;
    }
    used_ = 0;
    classes_.clear();
  }

  double ms(kernel_class c) const { return ms_.at(static_cast<std::size_t>(c)); }
  long long calls(kernel_class c) const { return calls_.at(static_cast<std::size_t>(c)); }

 private:
  cudaEvent_t event(std::size_t i) {
    while (events_.size() <= i) {
      cudaEvent_t e = nullptr;
      AQ_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return events_[i];
  }

  std::vector<cudaEvent_t> events_;
  std::vector<kernel_class> classes_;
  std::size_t used_ = 0;
  std::array<double, static_cast<std::size_t>(kernel_class::count)> ms_{};
  std::array<long long, static_cast<std::size_t>(kernel_class::count)> calls_{};
};

// Runs f() as one region of class c when a profile is attached.
template <class F>
void profiled(kernel_profile* p, kernel_class c, cudaStream_t s, F&& f) {
  if (p != nullptr) p->begin(c, s);
  f();
  if (p != nullptr) p->end(s);
}

}  // namespace aq::cuda
