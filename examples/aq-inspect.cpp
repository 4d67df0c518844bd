// aq-inspect: what aq sees in a Qwen3-VL model directory before any run: the config, parameter
// counts, the checkpoint's binding against the config, and the quantizable modules and groups
// (ModelOpt's names) with their weight shapes.
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <string>

#include <aq/io/checkpoint/safetensors.hpp>
#include <aq/model/quantizable_modules.hpp>
#include <aq/model/qwen3_vl/config_json.hpp>
#include <aq/model/qwen3_vl/modules.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: aq-inspect --model DIR [--no-modules]\n"
               "  DIR holds config.json and, optionally, model.safetensors or model.safetensors.index.json + shards.\n"
               "  Prints the config, parameter counts, the checkpoint check, and the quantizable modules and groups.\n");
}

std::string with_commas(std::int64_t value) {
  const std::string digits = std::to_string(value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void print_config(const aq::qwen3_vl::config& c) {
  const auto& t = c.text;
  const auto& v = c.vision;
  std::printf("config\n");
  std::printf("  text:   hidden %lld, intermediate %lld, layers %lld, heads %lld, kv heads %lld, head_dim %lld, vocab %lld\n",
              static_cast<long long>(t.hidden_size), static_cast<long long>(t.intermediate_size),
              static_cast<long long>(t.num_hidden_layers), static_cast<long long>(t.num_attention_heads),
              static_cast<long long>(t.num_key_value_heads), static_cast<long long>(t.head_dim),
              static_cast<long long>(t.vocab_size));
  std::printf("          rms_norm_eps %g, rope_theta %g, mrope_section [%lld, %lld, %lld]%s, act %s, attention_bias %s\n",
              t.rms_norm_eps, t.rope_theta, static_cast<long long>(t.mrope_section[0]),
              static_cast<long long>(t.mrope_section[1]), static_cast<long long>(t.mrope_section[2]),
              t.mrope_interleaved ? " interleaved" : "", t.hidden_act.c_str(), t.attention_bias ? "true" : "false");
  std::string deepstack;
  for (const auto index : v.deepstack_visual_indexes) deepstack += (deepstack.empty() ? "" : ", ") + std::to_string(index);
  std::printf("  vision: depth %lld, hidden %lld, heads %lld, intermediate %lld, patch %lld, temporal %lld, merge %lld, "
              "out_hidden %lld, positions %lld, deepstack [%s], act %s\n",
              static_cast<long long>(v.depth), static_cast<long long>(v.hidden_size), static_cast<long long>(v.num_heads),
              static_cast<long long>(v.intermediate_size), static_cast<long long>(v.patch_size),
              static_cast<long long>(v.temporal_patch_size), static_cast<long long>(v.spatial_merge_size),
              static_cast<long long>(v.out_hidden_size), static_cast<long long>(v.num_position_embeddings),
              deepstack.c_str(), v.hidden_act.c_str());
  std::printf("  tokens: image %lld, video %lld, vision_start %lld, vision_end %lld; tie_word_embeddings %s\n",
              static_cast<long long>(c.image_token_id), static_cast<long long>(c.video_token_id),
              static_cast<long long>(c.vision_start_token_id), static_cast<long long>(c.vision_end_token_id),
              c.tie_word_embeddings ? "true" : "false");
}

void print_counts(const aq::qwen3_vl::config& c) {
  const auto counts = aq::qwen3_vl::count_parameters(c);
  std::printf("parameters\n");
  std::printf("  total    %15s\n", with_commas(counts.total).c_str());
  std::printf("  text     %15s\n", with_commas(counts.text).c_str());
  std::printf("  vision   %15s\n", with_commas(counts.vision).c_str());
  std::printf("  lm_head  %15s%s\n", with_commas(counts.lm_head).c_str(),
              counts.lm_head_tied ? " (tied to embed_tokens, not in total)" : "");
}

void print_checkpoint(const aq::qwen3_vl::config& c, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::exists(dir / aq::safetensors_index_name) && !fs::exists(dir / aq::safetensors_single_name)) {
    std::printf("checkpoint\n  none in %s (config only)\n", dir.string().c_str());
    return;
  }
  const aq::safetensors_checkpoint checkpoint(dir);
  aq::qwen3_vl::check_parameters(c, checkpoint);  // throws with every problem listed
  std::map<std::string, std::size_t> dtypes;
  for (const auto& t : checkpoint.tensors()) ++dtypes[std::string(t.dtype.name)];
  std::string dtype_list;
  for (const auto& [name, n] : dtypes) dtype_list += (dtype_list.empty() ? "" : ", ") + name + " x" + std::to_string(n);
  std::printf("checkpoint\n  %zu file(s)%s, %zu tensors (%s), %s bytes; matches config\n", checkpoint.files().size(),
              checkpoint.sharded() ? " (sharded)" : "", checkpoint.tensors().size(), dtype_list.c_str(),
              with_commas(static_cast<std::int64_t>(checkpoint.total_bytes())).c_str());
  if (c.tie_word_embeddings && checkpoint.find(aq::qwen3_vl::lm_head_weight_name) != nullptr) {
    std::printf("  lm_head.weight is stored but ignored: tied to embed_tokens\n");
  }
}

void print_modules(const aq::qwen3_vl::config& c) {
  const auto modules = aq::qwen3_vl::quantizable_modules(c);
  const auto groups = aq::group_modules(modules);
  std::int64_t total = 0;
  for (const auto& m : modules) total += m.numel();
  std::printf("quantizable modules: %zu, groups: %zu, weights %s\n", modules.size(), groups.size(),
              with_commas(total).c_str());
  for (const auto& g : groups) {
    std::printf("  %-64s %15s\n", g.name.c_str(), with_commas(g.numel).c_str());
    for (const std::size_t index : g.members) {
      const auto& m = modules[index];
      std::printf("    %-62s %-7s %s\n", m.name.c_str(), std::string(aq::module_kind_name(m.kind)).c_str(),
                  aq::shape_string(m.weight_shape).c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path model;
  bool modules = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      model = argv[++i];
    } else if (std::strcmp(argv[i], "--no-modules") == 0) {
      modules = false;
    } else {
      std::fprintf(stderr, "aq-inspect: unknown argument %s (try --help)\n", argv[i]);
      return 1;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "aq-inspect: --model DIR is required (try --help)\n");
    return 1;
  }
  try {
    const auto config = aq::read_qwen3_vl_config(model);
    print_config(config);
    print_counts(config);
    print_checkpoint(config, std::filesystem::is_directory(model) ? model : model.parent_path());
    if (modules) print_modules(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-inspect: %s\n", e.what());
    return 1;
  }
  return 0;
}
