// Host-only half of aq-autoquant-cuda: safetensors in (weights) and out (quantizer state).
#include "aq-autoquant-cuda.hpp"

#include <aq/autoquant/calib_inputs.hpp>
#include <aq/autoquant/outputs.hpp>
#include <aq/autoquant/preflight.hpp>
#include <aq/autoquant/result_json.hpp>
#include <aq/core/output_set.hpp>
#include <aq/core/error.hpp>
#include <aq/model/qwen3_vl/modules.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>
#include <aq/backend/cuda/qwen3_vl_text_checkpoint.hpp>
#include <aq/backend/cuda/qwen3_vl_vision_checkpoint.hpp>
#include <aq/io/calib_batches.hpp>
#include <aq/io/calib_dataset.hpp>
#include <aq/io/image.hpp>
#include <aq/io/image_preprocess.hpp>
#include <aq/model/qwen3_vl/config_json.hpp>
#include <aq/io/safetensors.hpp>
#include <aq/io/tokenizer.hpp>

namespace aq_cuda_driver {

void preflight(const aq::autoquant::driver_options& options, std::int64_t seq_len, const std::filesystem::path& calib,
               aq::output_set& outputs) {
  aq::autoquant::preflight(options, seq_len, calib, outputs);
}

aq::qwen3_vl::config read_config(const std::filesystem::path& dir) { return aq::read_qwen3_vl_config(dir); }

std::vector<aq::io::calib_batch> make_batches(const std::filesystem::path& tokenizer, const std::filesystem::path& captions,
                                              std::int64_t samples, std::int64_t batch_size, std::int64_t seq_len) {
  return aq::autoquant::make_caption_batches(aq::io::tokenizer::from_file(tokenizer), captions, samples, batch_size, seq_len);
}

std::vector<aq::io::calib_batch> make_image_batches(const std::filesystem::path& tokenizer,
                                                    const std::filesystem::path& jsonl, std::int64_t samples,
                                                    std::int64_t seq_len, const aq::qwen3_vl::config& cfg) {
  return aq::autoquant::make_image_caption_batches(aq::io::tokenizer::from_file(tokenizer), jsonl, samples, seq_len, cfg);
}

aq::cuda::qwen3_vl_vision_device_weights load_vision_weights(const std::filesystem::path& dir,
                                                             const aq::qwen3_vl::config& cfg) {
  const aq::safetensors_checkpoint checkpoint(dir);
  aq::qwen3_vl::check_parameters(cfg, checkpoint);  // every tensor named and shaped as the config says
  return aq::cuda::load_vision_weights(cfg, checkpoint);
}

aq::cuda::qwen3_vl_text_device_weights load_weights(const std::filesystem::path& dir, const aq::qwen3_vl::config& cfg) {
  const aq::safetensors_checkpoint checkpoint(dir);
  aq::qwen3_vl::check_parameters(cfg, checkpoint);
  return aq::cuda::load_text_weights(cfg, checkpoint);
}

void write_outputs(const std::filesystem::path& out, const aq::autoquant::search_space& space,
                   const aq::autoquant::autoquant_result& result) {
  aq::autoquant::write_outputs(out, space, result);
}

std::string run_log(const aq::autoquant::search_space& space, const aq::autoquant::autoquant_result& result,
                    const aq::autoquant::engine_options& options, double load_seconds) {
  return aq::autoquant::render_run_log(space, result, options, load_seconds);
}

std::string run_log_filename(const std::string& scheme) { return aq::autoquant::run_log_filename(scheme); }

}  // namespace aq_cuda_driver

namespace aq_cuda_driver {

aq::autoquant::search_space make_space(const aq::qwen3_vl::config& cfg, const std::vector<std::string>& formats,
                                       const std::vector<std::string>& patterns, aq::autoquant::module_root root) {
  return aq::autoquant::make_search_space(aq::qwen3_vl::quantizable_modules(cfg), formats, patterns, root);
}

void dump_batches(const std::filesystem::path& file, const std::vector<aq::io::calib_batch>& batches) {
  aq::write_file(file, aq::autoquant::render_batches(aq::autoquant::stack_batches(batches)));
}

std::string result_json(const aq::autoquant::search_space& space, const aq::autoquant::autoquant_result& result,
                        const aq::autoquant::engine_options& options, const json_fields& f,
                        const std::vector<aq::io::calib_batch>& batches) {
  aq::autoquant::result_json_context c;
  c.model = f.model;
  c.formats = f.formats;
  c.effective_bits_requested = f.effective_bits_requested;
  c.batch_size = f.batch_size;
  c.data_sha256 = f.images ? std::string() : aq::autoquant::data_sha256(aq::autoquant::stack_batches(batches));
  c.num_samples = f.num_samples;
  c.seq_len = f.seq_len;
  c.num_batches = f.num_batches;
  c.data = f.data;
  c.attention = f.attention;
  c.threads = 1;
  c.model_load_s = f.model_load_s;
  c.weight_bytes = static_cast<std::int64_t>(f.weight_bytes);
  c.device = "cuda";
  c.gpu = f.gpu;
  c.precision = "bf16 weights and GEMMs, fp32 accumulation";
  c.dtype = "bfloat16";
  c.peak_allocated_bytes = c.peak_reserved_bytes = static_cast<std::int64_t>(f.peak_bytes);
  return aq::autoquant::render_result_json(space, result, options, c);
}

}  // namespace aq_cuda_driver
