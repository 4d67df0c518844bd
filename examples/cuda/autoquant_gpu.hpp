// aq-autoquant --device cuda: the GPU half of the driver (autoquant_gpu.cu), callable from host
// code. The shared driver reads flags, data and checkpoints and writes every output; this half
// holds the device: weights, memory plan, model, the CUDA scoring backend and its measurements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <aq/core/progress.hpp>
#include <aq/engine/engine.hpp>
#include <aq/io/data/calib_batches.hpp>
#include <aq/model/qwen3_vl/config.hpp>
#include <aq/search/search_space.hpp>

#include "cli/options.hpp"

namespace aq::cuda {
struct qwen3_vl_text_device_weights;
struct qwen3_vl_vision_device_weights;
}  // namespace aq::cuda

namespace aq::qwen3_vl {
struct text_weights;
struct vision_weights;
}  // namespace aq::qwen3_vl

namespace aq::autoquant_gpu {

// Whether this process sees a CUDA device.
bool device_present();

// What one GPU run is given besides the device weights.
struct run_inputs {
  const autoquant::driver_options* options = nullptr;
  const qwen3_vl::config* cfg = nullptr;
  const autoquant::search_space* space = nullptr;
  const std::vector<io::calib_batch>* batches = nullptr;
  bool images = false;  // image-caption batches (through the vision tower)
  std::int64_t batch_size = 0;
  const autoquant::engine_options* engine = nullptr;
  autoquant::progress_callback progress;
  const std::vector<io::calib_batch>* held_out = nullptr;  // evaluation batches (with engine->evaluate)
};

class session {
 public:
  // The current device and its context, created first so that the run's memory excludes it;
  // throws a one-line error when there is no usable device.
  session();
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Opens the fused attention library (cuDNN) on a thread while the weights load and, with
  // rows > 0, plans the decoder's attention for passes of `rows` unpadded sequences of `seq`
  // tokens (the likely pass of text that fills its sequence). run() waits for it, if
  // join_attention_library() has not.
  void open_attention_library(const qwen3_vl::config& cfg, std::int64_t rows, std::int64_t seq);
  // Waits for open_attention_library's thread (none: returns at once).
  void join_attention_library();

  // Device weights: the built-in model's host weights uploaded (`vision` only for image data),
  // or a checkpoint's, loaded onto the device by host code (checkpoint IO stays out of the CUDA
  // unit). Both return once the device holds them.
  void upload(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& text, const qwen3_vl::vision_weights* vision);
  void adopt(cuda::qwen3_vl_text_device_weights&& text, cuda::qwen3_vl_vision_device_weights&& vision);
  std::size_t weight_bytes() const;

  // Memory plan, model, CUDA scoring backend and the pipeline; the result as the CPU gives it.
  autoquant::autoquant_result run(const run_inputs& in);

  std::string device_name() const;
  std::size_t peak_bytes() const;  // above the context's baseline
  // The GPU lines printed after the run log: card, stage wall times, GEMM rates, memory, passes
  // and (--profile-kernels) the GPU time per kernel class.
  std::string summary(double load_seconds, double weights_seconds, double write_seconds) const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace aq::autoquant_gpu
