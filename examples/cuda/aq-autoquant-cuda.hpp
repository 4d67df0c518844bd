// What aq-autoquant-cuda's two translation units share: checkpoint loading and report writing
// live in a host-only unit (they read and write safetensors), the GPU passes in the CUDA unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <aq/autoquant/engine.hpp>
#include <aq/autoquant/options.hpp>
#include <aq/autoquant/search_space.hpp>
#include <aq/core/output_set.hpp>
#include <aq/backend/cuda/qwen3_vl_text_weights.cuh>
#include <aq/backend/cuda/qwen3_vl_vision_weights.cuh>
#include <aq/io/calib_batches.hpp>
#include <aq/model/qwen3_vl/config.hpp>

namespace aq_cuda_driver {

// The model dir, its positions against seq_len, the calibration file and every output location,
// checked before the GPU is touched (autoquant::preflight, shared with aq-autoquant).
void preflight(const aq::autoquant::driver_options& options, std::int64_t seq_len, const std::filesystem::path& calib,
               aq::output_set& outputs);

// config.json of a model dir.
aq::qwen3_vl::config read_config(const std::filesystem::path& dir);

// Caption batches: the first `samples` lines tokenized, left-padded to seq_len, `batch_size` rows each.
std::vector<aq::io::calib_batch> make_batches(const std::filesystem::path& tokenizer, const std::filesystem::path& captions,
                                              std::int64_t samples, std::int64_t batch_size, std::int64_t seq_len);

// Image-caption batches (one image per batch) from a captions.jsonl, preprocessed for the model.
std::vector<aq::io::calib_batch> make_image_batches(const std::filesystem::path& tokenizer,
                                                    const std::filesystem::path& jsonl, std::int64_t samples,
                                                    std::int64_t seq_len, const aq::qwen3_vl::config& cfg);

// model dir -> the vision tower's weights on the GPU.
aq::cuda::qwen3_vl_vision_device_weights load_vision_weights(const std::filesystem::path& dir,
                                                             const aq::qwen3_vl::config& cfg);

// model dir -> the text decoder's weights on the GPU.
aq::cuda::qwen3_vl_text_device_weights load_weights(const std::filesystem::path& dir, const aq::qwen3_vl::config& cfg);

// Manifest, sensitivity reports and quantizer state into `out` (the output set's staged folder).
void write_outputs(const std::filesystem::path& out, const aq::autoquant::search_space& space,
                   const aq::autoquant::autoquant_result& result);

// The engine's run log (stage timings included) and its file name.
std::string run_log(const aq::autoquant::search_space& space, const aq::autoquant::autoquant_result& result,
                    const aq::autoquant::engine_options& options, double load_seconds);
std::string run_log_filename(const std::string& scheme);

// The search space over every quantizable module (vision ones too) under the scope patterns.
aq::autoquant::search_space make_space(const aq::qwen3_vl::config& cfg, const std::vector<std::string>& formats,
                                       const std::vector<std::string>& patterns, aq::autoquant::module_root root);

// --dump-batches (written to `file`, the output set's staged path) and the data digest of the
// comparison JSON.
void dump_batches(const std::filesystem::path& file, const std::vector<aq::io::calib_batch>& batches);

// The comparison JSON (aq.autoquant.compare/v1) with the GPU's device, precision and memory.
struct json_fields {
  std::string model, data, attention, gpu;
  std::vector<std::string> formats;
  double effective_bits_requested = 0.0, model_load_s = 0.0;
  std::int64_t batch_size = 0, num_samples = 0, seq_len = 0, num_batches = 0;
  std::size_t weight_bytes = 0, peak_bytes = 0;
  bool images = false;  // image-caption batches (no data digest: their lengths differ)
};
std::string result_json(const aq::autoquant::search_space& space, const aq::autoquant::autoquant_result& result,
                        const aq::autoquant::engine_options& options, const json_fields& fields,
                        const std::vector<aq::io::calib_batch>& batches);

}  // namespace aq_cuda_driver
