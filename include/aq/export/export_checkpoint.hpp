// Writes an exported checkpoint into a folder: the input's shards mirrored one by one (same file
// names, each quantized module's weight replaced by its layout's tensors, every other tensor
// copied byte for byte), the shard index when the input has one, config.json with its
// quantization_config, hf_quant_config.json for ModelOpt, and the tokenizer / processor files.
// Each shard is streamed (checkpoint_writer.hpp) and its quantized weights converted in parallel,
// so memory holds one converting weight per thread beyond the input mapping. The caller stages
// the folder and publishes it (examples/cli/output_set.hpp); the plan has already refused what
// cannot be exported, and check_export_inputs refuses the rest before a byte is written.
#pragma once

#include <array>
#include <atomic>
#include <exception>
#include <functional>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/export/checkpoint_layout.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/compressed_tensors_layout.hpp"
#include "aq/export/config_json.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/export/modelopt_layout.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/regular_file.hpp"

namespace aq::hf_export {

// Files next to the weights that a serving stack reads, copied when present.
inline constexpr std::array<std::string_view, 11> side_files{"tokenizer.json",
                                                             "tokenizer_config.json",
                                                             "generation_config.json",
                                                             "preprocessor_config.json",
                                                             "video_preprocessor_config.json",
                                                             "chat_template.json",
                                                             "chat_template.jinja",
                                                             "special_tokens_map.json",
                                                             "vocab.json",
                                                             "merges.txt",
                                                             "added_tokens.json"};

inline constexpr std::string_view hf_quant_config_name = "hf_quant_config.json";

// The shard file names of a checkpoint, in its file order (tensor-less shards have none to mirror).
inline std::vector<std::string> shard_names(const safetensors_checkpoint& checkpoint) {
  std::vector<std::string> names;
  for (const auto& file : checkpoint.files()) {
    if (!file->tensors().empty())
      names.push_back(std::filesystem::path(file->tensors().front().file).filename().string());
  }
  return names;
}

// Every file name an export of `checkpoint` from `model_dir` writes into its folder.
inline std::vector<std::string> export_file_names(const std::filesystem::path& model_dir,
                                                  const safetensors_checkpoint& checkpoint, checkpoint_layout layout) {
  std::vector<std::string> names = shard_names(checkpoint);
  if (checkpoint.sharded()) names.emplace_back(safetensors_index_name);
  names.emplace_back("config.json");
  if (layout == checkpoint_layout::modelopt) names.emplace_back(hf_quant_config_name);
  std::error_code ec;
  for (const std::string_view side : side_files) {
    if (std::filesystem::is_regular_file(model_dir / side, ec)) names.emplace_back(side);
  }
  return names;
}

// Each planned module's weight is in the checkpoint as a float [rows, cols] tensor.
inline void check_export_inputs(const export_plan& plan, const safetensors_checkpoint& checkpoint) {
  for (const module_export& m : plan.quantized) {
    const tensor_view& weight = checkpoint.at(weight_tensor_name(m.name));
    const bool shaped = weight.shape.size() == 2 && weight.shape[0] == m.rows && weight.shape[1] == m.cols;
    if (!shaped)
      throw error(std::string(weight.file) + ": tensor " + weight_tensor_name(m.name) +
                  ": shape differs from the config's");
    if (!find_dtype(weight.dtype.name)) {
      throw error(std::string(weight.file) + ": tensor " + weight_tensor_name(m.name) + ": dtype " +
                  std::string(weight.dtype.name) + " cannot be quantized (BF16, F16, F32)");
    }
  }
}

namespace detail {

inline division_rounding rounding_of(const dtype& type) {
  if (type == dtype_bf16) return division_rounding::bf16;
  if (type == dtype_f16) return division_rounding::f16;
  return division_rounding::f32;
}

// fp32 buffers lent to the tasks running at one time and freed with the export: a weight's fp32
// copy reuses pages already faulted in (a fresh 100 MB vector per weight costs more in page
// faults than its conversion), and nothing stays allocated in the pool's threads afterwards.
class scratch_buffers {
 public:
  std::vector<float> take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return {};
    std::vector<float> buffer = std::move(free_.back());
    free_.pop_back();
    return buffer;
  }
  void give_back(std::vector<float> buffer) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(buffer));
  }

 private:
  std::mutex mutex_;
  std::vector<std::vector<float>> free_;
};

inline std::vector<output_tensor> exported_tensors(const module_export& m, const tensor_view& weight,
                                                   checkpoint_layout layout, scratch_buffers& scratch) {
  std::vector<float> buffer = scratch.take();
  buffer.resize(static_cast<std::size_t>(weight.numel()));
  const std::span<float> values(buffer);
  convert_tensor(weight, values);
  std::vector<output_tensor> tensors = layout == checkpoint_layout::modelopt
                                           ? modelopt_module_tensors(m, values, rounding_of(weight.dtype))
                                           : compressed_tensors_module_tensors(m, values);
  scratch.give_back(std::move(buffer));
  return tensors;
}

// The tensors a shard of the export holds in place of `file`'s, in its order.
inline std::vector<tensor_spec> shard_specs(const safetensors_file& file, const export_plan& plan) {
  std::vector<tensor_spec> specs;
  for (const tensor_view& view : file.tensors()) {
    if (const module_export* m = plan.for_weight(view.name)) {
      for (tensor_spec& spec : plan.layout == checkpoint_layout::modelopt ? modelopt_module_specs(*m)
                                                                           : compressed_tensors_module_specs(*m)) {
        specs.push_back(std::move(spec));
      }
    } else {
      specs.push_back({std::string(view.name), view.dtype, {view.shape.begin(), view.shape.end()}});
    }
  }
  return specs;
}

// Calls task(i) for every i in [0, count), spread over the pool's threads as they come free (a
// quantized weight takes far longer than a copied norm). The first exception stops the others
// from starting new tasks and is rethrown here.
inline void for_each_task(thread_pool& pool, std::size_t count, const std::function<void(std::size_t)>& task) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  std::mutex mutex;
  pool.parallel_for(static_cast<std::int64_t>(pool.size()), 1, [&](std::int64_t, std::int64_t) {
    for (std::size_t i = next++; i < count && !failed; i = next++) {
      try {
        task(i);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!first) first = std::current_exception();
        failed = true;
      }
    }
  });
  if (first) std::rethrow_exception(first);
}

// One input shard's counterpart: each quantized weight converted on some thread and written at
// its offset, every other tensor copied from the input mapping.
inline std::uint64_t write_shard(const safetensors_file& file, const export_plan& plan,
                                 const std::filesystem::path& path, thread_pool& pool,
                                 std::map<std::string, std::string>& weight_map) {
  const std::vector<tensor_spec> specs = shard_specs(file, plan);
  shard_file out(path, specs);
  const std::span<const tensor_view> views = file.tensors();
  scratch_buffers scratch;
  for_each_task(pool, views.size(), [&](std::size_t i) {
    const tensor_view& view = views[i];
    if (const module_export* m = plan.for_weight(view.name)) {
      for (const output_tensor& t : exported_tensors(*m, view, plan.layout, scratch)) out.write(t);
    } else {
      out.write(view.name, view.bytes);
    }
  });
  out.finish();
  for (const tensor_spec& spec : specs) weight_map[spec.name] = path.filename().string();
  return out.data_bytes();
}

inline void write_config(const std::filesystem::path& model_dir, const export_plan& plan,
                         const std::filesystem::path& out_dir) {
  const std::filesystem::path source = model_dir / "config.json";
  const std::string text = read_regular_file(source);
  const bool modelopt = plan.layout == checkpoint_layout::modelopt;
  const json_value_writer quantization = [&](io::json_writer& json) {
    modelopt ? write_modelopt_quantization_config(json, plan)
             : write_compressed_tensors_quantization_config(json, plan);
  };
  // ModelOpt rewrites config.json with json.dump(indent=4); transformers' save_pretrained, which
  // writes the compressed-tensors one, uses indent 2 and a final newline.
  write_file_atomic(out_dir / "config.json",
                    config_with_quantization(text, source.string(), modelopt ? 4 : 2, !modelopt, quantization));
  if (modelopt) write_file_atomic(out_dir / hf_quant_config_name, modelopt_hf_quant_config(plan));
}

}  // namespace detail

// Writes the export into the existing folder `out_dir`, one shard at a time, on `pool`'s threads.
inline void write_export(const std::filesystem::path& model_dir, const safetensors_checkpoint& checkpoint,
                         const export_plan& plan, const std::filesystem::path& out_dir,
                         thread_pool& pool = default_thread_pool()) {
  check_export_inputs(plan, checkpoint);
  std::map<std::string, std::string> weight_map;
  std::uint64_t total_size = 0;
  for (const auto& file : checkpoint.files()) {
    if (file->tensors().empty()) continue;
    const std::string shard = std::filesystem::path(file->tensors().front().file).filename().string();
    total_size += detail::write_shard(*file, plan, out_dir / shard, pool, weight_map);
  }
  if (checkpoint.sharded())
    write_file_atomic(out_dir / safetensors_index_name, shard_index_json(total_size, weight_map));
  detail::write_config(model_dir, plan, out_dir);
  for (const std::string_view side : side_files) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(model_dir / side, ec)) continue;
    write_file_atomic(out_dir / side, read_regular_file(model_dir / side));
  }
}

}  // namespace aq::hf_export
