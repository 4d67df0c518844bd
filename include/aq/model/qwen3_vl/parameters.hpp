// The parameters a Qwen3-VL checkpoint must hold, computed from the config (names and shapes as
// transformers' Qwen3VLForConditionalGeneration registers them), and the binding check of a
// checkpoint against that list: the gate between reading safetensors and running the model.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/safetensors.hpp"
#include "aq/model/qwen3_vl/config.hpp"

namespace aq::qwen3_vl {

enum class model_part { vision, text, lm_head };

inline std::string_view part_name(model_part part) {
  return part == model_part::vision ? "vision" : part == model_part::text ? "text" : "lm_head";
}

struct parameter_spec {
  std::string name;
  std::vector<std::int64_t> shape;
  model_part part = model_part::text;

  // Element count; a shape whose count overflows int64 is an error naming the parameter.
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t extent : shape) {
      if (__builtin_mul_overflow(n, extent, &n)) {
        throw error("parameter " + name + ": shape " + format_shape(shape) + " has more elements than int64 holds");
      }
    }
    return n;
  }
};

inline constexpr std::string_view vision_prefix = "model.visual.";
inline constexpr std::string_view text_prefix = "model.language_model.";
inline constexpr std::string_view lm_head_weight_name = "lm_head.weight";
inline constexpr std::string_view embed_tokens_weight_name = "model.language_model.embed_tokens.weight";

// Width of a merger's input: merge_size^2 vision tokens concatenated.
inline std::int64_t merger_hidden_size(const vision_config& v) {
  return v.hidden_size * v.spatial_merge_size * v.spatial_merge_size;
}

// Every parameter in named_parameters order: vision tower, text decoder, then lm_head, which is
// listed only when untied (a tied head is embed_tokens; checkpoints normally omit it).
inline std::vector<parameter_spec> expected_parameters(const config& cfg) {
  std::vector<parameter_spec> out;
  const vision_config& v = cfg.vision;
  const text_config& t = cfg.text;
  const std::string vp(vision_prefix);
  const auto vision = [&](std::string name, std::vector<std::int64_t> shape) {
    out.push_back({vp + name, std::move(shape), model_part::vision});
  };
  const auto layer_norm = [&](const std::string& module, std::int64_t width) {
    vision(module + ".weight", {width});
    vision(module + ".bias", {width});
  };
  const auto linear_with_bias = [&](const std::string& module, std::int64_t out_features, std::int64_t in_features) {
    vision(module + ".weight", {out_features, in_features});
    vision(module + ".bias", {out_features});
  };

  vision("patch_embed.proj.weight", {v.hidden_size, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  vision("patch_embed.proj.bias", {v.hidden_size});
  vision("pos_embed.weight", {v.num_position_embeddings, v.hidden_size});
  for (std::int64_t b = 0; b < v.depth; ++b) {
    const std::string block = "blocks." + std::to_string(b) + ".";
    layer_norm(block + "norm1", v.hidden_size);
    layer_norm(block + "norm2", v.hidden_size);
    linear_with_bias(block + "attn.qkv", 3 * v.hidden_size, v.hidden_size);
    linear_with_bias(block + "attn.proj", v.hidden_size, v.hidden_size);
    linear_with_bias(block + "mlp.linear_fc1", v.intermediate_size, v.hidden_size);
    linear_with_bias(block + "mlp.linear_fc2", v.hidden_size, v.intermediate_size);
  }
  const std::int64_t merged = merger_hidden_size(v);
  const auto merger = [&](const std::string& module, std::int64_t norm_width) {
    layer_norm(module + ".norm", norm_width);
    linear_with_bias(module + ".linear_fc1", merged, merged);
    linear_with_bias(module + ".linear_fc2", v.out_hidden_size, merged);
  };
  merger("merger", v.hidden_size);  // norm before the merge_size^2 concat
  for (std::size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
    merger("deepstack_merger_list." + std::to_string(k), merged);  // norm after the concat
  }

  const std::string tp(text_prefix);
  const auto text = [&](std::string name, std::vector<std::int64_t> shape) {
    out.push_back({tp + name, std::move(shape), model_part::text});
  };
  const std::int64_t q_width = t.num_attention_heads * t.head_dim;
  const std::int64_t kv_width = t.num_key_value_heads * t.head_dim;
  const auto attention_linear = [&](const std::string& module, std::int64_t out_features, std::int64_t in_features) {
    text(module + ".weight", {out_features, in_features});
    if (t.attention_bias) text(module + ".bias", {out_features});
  };
  text("embed_tokens.weight", {t.vocab_size, t.hidden_size});
  for (std::int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string layer = "layers." + std::to_string(l) + ".";
    attention_linear(layer + "self_attn.q_proj", q_width, t.hidden_size);
    attention_linear(layer + "self_attn.k_proj", kv_width, t.hidden_size);
    attention_linear(layer + "self_attn.v_proj", kv_width, t.hidden_size);
    attention_linear(layer + "self_attn.o_proj", t.hidden_size, q_width);
    text(layer + "self_attn.q_norm.weight", {t.head_dim});
    text(layer + "self_attn.k_norm.weight", {t.head_dim});
    text(layer + "mlp.gate_proj.weight", {t.intermediate_size, t.hidden_size});
    text(layer + "mlp.up_proj.weight", {t.intermediate_size, t.hidden_size});
    text(layer + "mlp.down_proj.weight", {t.hidden_size, t.intermediate_size});
    text(layer + "input_layernorm.weight", {t.hidden_size});
    text(layer + "post_attention_layernorm.weight", {t.hidden_size});
  }
  text("norm.weight", {t.hidden_size});
  if (!cfg.tie_word_embeddings) {
    out.push_back({std::string(lm_head_weight_name), {t.vocab_size, t.hidden_size}, model_part::lm_head});
  }
  return out;
}

// Parameter counts: each stored weight once (a tied lm_head adds nothing to `total`).
struct parameter_counts {
  std::int64_t vision = 0;
  std::int64_t text = 0;     // decoder incl. embed_tokens and final norm, without an untied lm_head
  std::int64_t lm_head = 0;  // weights of the output projection (shared with embed_tokens when tied)
  bool lm_head_tied = true;
  std::int64_t total = 0;
};

namespace detail {

inline std::int64_t checked_add(std::int64_t a, std::int64_t b, std::string_view what) {
  std::int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) throw error("qwen3_vl parameter count: " + std::string(what) + " overflows int64");
  return out;
}

}  // namespace detail

inline parameter_counts count_parameters(const config& cfg) {
  parameter_counts counts;
  for (const parameter_spec& p : expected_parameters(cfg)) {
    if (p.part == model_part::vision) counts.vision = detail::checked_add(counts.vision, p.numel(), "vision");
    if (p.part == model_part::text) counts.text = detail::checked_add(counts.text, p.numel(), "text");
  }
  counts.lm_head = parameter_spec{std::string(lm_head_weight_name), {cfg.text.vocab_size, cfg.text.hidden_size}}.numel();
  counts.lm_head_tied = cfg.tie_word_embeddings;
  counts.total = detail::checked_add(detail::checked_add(counts.vision, counts.text, "total"),
                                     cfg.tie_word_embeddings ? 0 : counts.lm_head, "total");
  return counts;
}

// Every way `tensors` differs from the expected parameters, one line each: missing tensors (in
// parameter order), mis-shaped tensors, then unexpected tensors (by name). A tied config tolerates
// a stored lm_head.weight of the right shape: transformers overwrites it with embed_tokens on load.
inline std::vector<std::string> parameter_problems(const config& cfg, std::span<const tensor_view> tensors) {
  std::vector<const tensor_view*> by_name;
  by_name.reserve(tensors.size());
  for (const tensor_view& t : tensors) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(), [](const tensor_view* a, const tensor_view* b) { return a->name < b->name; });
  const auto find = [&](std::string_view name) -> const tensor_view* {
    const auto it = std::lower_bound(by_name.begin(), by_name.end(), name,
                                     [](const tensor_view* t, std::string_view key) { return t->name < key; });
    return it != by_name.end() && (*it)->name == name ? *it : nullptr;
  };
  const auto same_shape = [](std::span<const std::int64_t> a, std::span<const std::int64_t> b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  };

  std::vector<parameter_spec> expected = expected_parameters(cfg);
  if (cfg.tie_word_embeddings) {
    expected.push_back({std::string(lm_head_weight_name), {cfg.text.vocab_size, cfg.text.hidden_size}, model_part::lm_head});
  }
  std::vector<std::string> missing;
  std::vector<std::string> misshaped;
  for (const parameter_spec& spec : expected) {
    const tensor_view* tensor = find(spec.name);
    const bool optional = cfg.tie_word_embeddings && spec.name == lm_head_weight_name;
    if (tensor == nullptr) {
      if (!optional) missing.push_back("missing tensor " + spec.name + " " + format_shape(spec.shape));
    } else if (!same_shape(tensor->shape, spec.shape)) {
      misshaped.push_back("tensor " + spec.name + ": shape " + format_shape(tensor->shape) + ", expected " +
                          format_shape(spec.shape));
    }
  }
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::string> problems = std::move(missing);
  problems.insert(problems.end(), misshaped.begin(), misshaped.end());
  for (const tensor_view* tensor : by_name) {
    const auto it = std::lower_bound(expected.begin(), expected.end(), tensor->name,
                                     [](const parameter_spec& p, std::string_view key) { return p.name < key; });
    if (it == expected.end() || it->name != tensor->name) {
      problems.push_back("unexpected tensor " + std::string(tensor->name) + " " + format_shape(tensor->shape));
    }
  }
  return problems;
}

// At most this many problems are spelled out; the rest are counted ("and N more").
inline constexpr std::size_t max_listed_problems = 20;

// Number of parameter tensors and their elements, from the config alone (no full list is built).
struct parameter_totals {
  std::int64_t tensors = 0;
  std::int64_t elements = 0;
};

inline parameter_totals expected_totals(const config& cfg) {
  // One layer and one block stand for all of them: the list of a 1-layer, 1-block model, scaled.
  config one = cfg;
  one.text.num_hidden_layers = 1;
  one.vision.depth = 1;
  one.vision.deepstack_visual_indexes.assign(cfg.vision.deepstack_visual_indexes.size(), 0);
  std::int64_t layer_tensors = 0, layer_elements = 0, block_tensors = 0, block_elements = 0;
  parameter_totals totals;
  for (const parameter_spec& p : expected_parameters(one)) {
    const bool in_layer = p.name.find(".layers.0.") != std::string::npos;
    const bool in_block = p.name.find(".blocks.0.") != std::string::npos;
    (in_layer ? layer_tensors : in_block ? block_tensors : totals.tensors) += 1;
    std::int64_t& elements = in_layer ? layer_elements : in_block ? block_elements : totals.elements;
    elements = detail::checked_add(elements, p.numel(), "total");
  }
  const auto scaled = [](std::int64_t count, std::int64_t per, std::int64_t base) {
    std::int64_t product = 0;
    if (__builtin_mul_overflow(count, per, &product)) throw error("qwen3_vl parameter count: total overflows int64");
    return detail::checked_add(base, product, "total");
  };
  totals.tensors = scaled(cfg.text.num_hidden_layers, layer_tensors, scaled(cfg.vision.depth, block_tensors, totals.tensors));
  totals.elements =
      scaled(cfg.text.num_hidden_layers, layer_elements, scaled(cfg.vision.depth, block_elements, totals.elements));
  return totals;
}

// Throws one aq::error listing the problems (first line: checkpoint and count, then one per line,
// at most max_listed_problems of them). A config that implies far more tensors and bytes than the
// checkpoint holds (parameters at 2 bytes, the narrowest dtype read) is refused in one line before
// any list is built from it.
inline void check_parameters(const config& cfg, const safetensors_checkpoint& checkpoint) {
  const std::string where = checkpoint.path().string() + ": checkpoint does not match config.json";
  const parameter_totals totals = expected_totals(cfg);
  const std::uint64_t held = checkpoint.total_bytes();
  const auto implied_bytes = 2 * static_cast<std::uint64_t>(totals.elements);
  if (implied_bytes > held + held / 2 &&
      static_cast<std::uint64_t>(totals.tensors) > 2 * checkpoint.tensors().size() + max_listed_problems) {
    throw error(where + ": the config implies " + std::to_string(totals.tensors) + " tensors of " +
                std::to_string(totals.elements) + " parameters (at least " + std::to_string(implied_bytes) +
                " bytes), the checkpoint holds " + std::to_string(checkpoint.tensors().size()) + " tensors of " +
                std::to_string(held) + " bytes");
  }
  const std::vector<std::string> problems = parameter_problems(cfg, checkpoint.tensors());
  if (problems.empty()) return;
  std::string message =
      where + " (" + std::to_string(problems.size()) + (problems.size() == 1 ? " problem)" : " problems)");
  for (std::size_t i = 0; i < problems.size() && i < max_listed_problems; ++i) message += "\n  " + problems[i];
  if (problems.size() > max_listed_problems) {
    message += "\n  and " + std::to_string(problems.size() - max_listed_problems) + " more";
  }
  throw error(message);
}

// The tensor that serves as the output projection: embed_tokens when tied (as transformers does,
// whatever lm_head.weight the files hold), lm_head.weight otherwise.
inline const tensor_view& lm_head_weight(const config& cfg, const safetensors_checkpoint& checkpoint) {
  return checkpoint.at(cfg.tie_word_embeddings ? embed_tokens_weight_name : lm_head_weight_name);
}

}  // namespace aq::qwen3_vl
