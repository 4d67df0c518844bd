// Qwen3-VL's tensor schema: every module of Qwen3VLForConditionalGeneration as one row of a
// table (its name, role, weight shape from the config, bias, GPU dtype, AutoQuant group), the
// only place a tensor name is spelled. Checkpoint checks, the quantizable-module list, the CPU
// and GPU weight loaders and the names the forward passes report all read these rows.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "aq/model/qwen3_vl/config.hpp"

namespace aq::qwen3_vl {

// The three parts of the model, each under its own name root.
enum class model_part { vision, text, lm_head };

namespace schema {

using shape = std::vector<std::int64_t>;

// A repeated unit of modules, in named_parameters order: the vision stem, ViT blocks, patch
// mergers (the final one, then the DeepStack ones), the decoder's embedding, its layers, its
// final norm, and the output head.
enum class family : std::uint8_t { vision_stem, vision_block, merger, text_stem, text_layer, text_tail, head };

// Every module, in named_parameters order within its family (the row order of `modules`).
enum class module_id : std::uint8_t {
  patch_embed, pos_embed,                                    // vision_stem
  norm1, norm2, attn_qkv, attn_proj, mlp_fc1, mlp_fc2,       // vision_block
  merger_norm, merger_fc1, merger_fc2,                       // merger
  embed_tokens,                                              // text_stem
  q_proj, k_proj, v_proj, o_proj, q_norm, k_norm,            // text_layer
  gate_proj, up_proj, down_proj, input_layernorm, post_attention_layernorm,
  final_norm,                                                // text_tail
  lm_head,                                                   // head
};

enum class role : std::uint8_t { linear, conv3d, layer_norm, rms_norm, embedding };

// Whether a module has a bias: never, always, or as text_config.attention_bias says.
enum class bias_rule : std::uint8_t { none, always, attention_bias };

// How the GPU holds a module's weight: bf16 matrices (the checkpoint dtype), fp32 norm weights,
// or fp32 on the host (the position grid, interpolated there). Biases are always fp32.
enum class gpu_dtype : std::uint8_t { bf16, f32, host_f32 };

enum class tensor_kind : std::uint8_t { weight, bias };

// The extents a weight shape is made of, read from the config by extent().
enum class dim : std::uint8_t {
  end,  // past the last extent of a shape
  hidden, intermediate, q_width, kv_width, head_dim, vocab,                            // text
  vision_hidden, qkv_width, vision_intermediate, in_channels, temporal_patch, patch,  // vision
  positions, merged, merger_norm, out_hidden,
};

struct module_spec {
  module_id id;
  family unit;
  std::string_view name;  // path inside its unit, e.g. self_attn.q_proj
  role kind;
  std::array<dim, 5> weight_dims;  // the weight's shape, ended by dim::end
  bias_rule bias;
  gpu_dtype dtype;
  module_id group;         // the module whose AutoQuant group it joins (itself: a group of its own)
  bool tied_to_embedding;  // its weight is embed_tokens' when tie_word_embeddings (not stored then)
};

struct family_spec {
  family id;
  model_part part;
  bool has_single;              // an unindexed instance (first in order)
  std::string_view single;      // its path inside the part ("" = the part root itself)
  std::string_view list;        // path of the indexed instances, * standing for the index; "" when none
  std::int64_t (*count)(const config&);  // indexed instances
};

struct part_spec {
  model_part id;
  std::string_view root;  // name prefix of its tensors
};

// Names used by more than one row.
inline constexpr std::string_view norm_name = "norm";
inline constexpr std::string_view fc1_name = "linear_fc1";
inline constexpr std::string_view fc2_name = "linear_fc2";
inline constexpr std::string_view lm_head_name = "lm_head";
inline constexpr std::string_view weight_suffix = ".weight";
inline constexpr std::string_view bias_suffix = ".bias";

// Width of a merger's input: merge_size^2 vision tokens concatenated.
inline std::int64_t merger_hidden_size(const vision_config& v) {
  return v.hidden_size * v.spatial_merge_size * v.spatial_merge_size;
}

// One extent of a weight of instance `index` (a merger's norm is over D before the merge_size^2
// concat for the final merger, index -1, and over the concatenated width for DeepStack ones).
inline std::int64_t extent(dim d, const config& c, std::int64_t index) {
  const text_config& t = c.text;
  const vision_config& v = c.vision;
  switch (d) {
    case dim::hidden: return t.hidden_size;
    case dim::intermediate: return t.intermediate_size;
    case dim::q_width: return t.num_attention_heads * t.head_dim;
    case dim::kv_width: return t.num_key_value_heads * t.head_dim;
    case dim::head_dim: return t.head_dim;
    case dim::vocab: return t.vocab_size;
    case dim::vision_hidden: return v.hidden_size;
    case dim::qkv_width: return 3 * v.hidden_size;
    case dim::vision_intermediate: return v.intermediate_size;
    case dim::in_channels: return v.in_channels;
    case dim::temporal_patch: return v.temporal_patch_size;
    case dim::patch: return v.patch_size;
    case dim::positions: return v.num_position_embeddings;
    case dim::merged: return merger_hidden_size(v);
    case dim::merger_norm: return index < 0 ? v.hidden_size : merger_hidden_size(v);
    case dim::out_hidden: return v.out_hidden_size;
    case dim::end: break;
  }
  return 0;
}

// Indexed instances of each family.
namespace count {
inline std::int64_t none(const config&) { return 0; }
inline std::int64_t depth(const config& c) { return c.vision.depth; }
inline std::int64_t deepstack(const config& c) { return static_cast<std::int64_t>(c.vision.deepstack_visual_indexes.size()); }
inline std::int64_t layers(const config& c) { return c.text.num_hidden_layers; }
}  // namespace count

inline constexpr std::array<part_spec, 3> parts{{
    {model_part::vision, "model.visual."},
    {model_part::text, "model.language_model."},
    {model_part::lm_head, ""},
}};

inline constexpr std::array<family_spec, 7> families{{
    {family::vision_stem, model_part::vision, true, "", "", count::none},
    {family::vision_block, model_part::vision, false, "", "blocks.*", count::depth},
    {family::merger, model_part::vision, true, "merger", "deepstack_merger_list.*", count::deepstack},
    {family::text_stem, model_part::text, true, "", "", count::none},
    {family::text_layer, model_part::text, false, "", "layers.*", count::layers},
    {family::text_tail, model_part::text, true, "", "", count::none},
    {family::head, model_part::lm_head, true, "", "", count::none},
}};

// One row per module: the table of the model.
inline constexpr std::array<module_spec, 25> modules{{
    // clang-format off
    // {id, unit, name, role, weight shape,
    //  bias, GPU dtype, AutoQuant group, tied to embed_tokens}
    {module_id::patch_embed, family::vision_stem, "patch_embed.proj", role::conv3d,
     {dim::vision_hidden, dim::in_channels, dim::temporal_patch, dim::patch, dim::patch},
     bias_rule::always, gpu_dtype::bf16, module_id::patch_embed, false},
    {module_id::pos_embed, family::vision_stem, "pos_embed", role::embedding, {dim::positions, dim::vision_hidden},
     bias_rule::none, gpu_dtype::host_f32, module_id::pos_embed, false},

    {module_id::norm1, family::vision_block, "norm1", role::layer_norm, {dim::vision_hidden},
     bias_rule::always, gpu_dtype::f32, module_id::norm1, false},
    {module_id::norm2, family::vision_block, "norm2", role::layer_norm, {dim::vision_hidden},
     bias_rule::always, gpu_dtype::f32, module_id::norm2, false},
    {module_id::attn_qkv, family::vision_block, "attn.qkv", role::linear, {dim::qkv_width, dim::vision_hidden},
     bias_rule::always, gpu_dtype::bf16, module_id::attn_qkv, false},
    {module_id::attn_proj, family::vision_block, "attn.proj", role::linear, {dim::vision_hidden, dim::vision_hidden},
     bias_rule::always, gpu_dtype::bf16, module_id::attn_proj, false},
    {module_id::mlp_fc1, family::vision_block, "mlp.linear_fc1", role::linear, {dim::vision_intermediate, dim::vision_hidden},
     bias_rule::always, gpu_dtype::bf16, module_id::mlp_fc1, false},
    {module_id::mlp_fc2, family::vision_block, "mlp.linear_fc2", role::linear, {dim::vision_hidden, dim::vision_intermediate},
     bias_rule::always, gpu_dtype::bf16, module_id::mlp_fc2, false},

    {module_id::merger_norm, family::merger, norm_name, role::layer_norm, {dim::merger_norm},
     bias_rule::always, gpu_dtype::f32, module_id::merger_norm, false},
    {module_id::merger_fc1, family::merger, fc1_name, role::linear, {dim::merged, dim::merged},
     bias_rule::always, gpu_dtype::bf16, module_id::merger_fc1, false},
    {module_id::merger_fc2, family::merger, fc2_name, role::linear, {dim::out_hidden, dim::merged},
     bias_rule::always, gpu_dtype::bf16, module_id::merger_fc2, false},

    {module_id::embed_tokens, family::text_stem, "embed_tokens", role::embedding, {dim::vocab, dim::hidden},
     bias_rule::none, gpu_dtype::bf16, module_id::embed_tokens, false},

    {module_id::q_proj, family::text_layer, "self_attn.q_proj", role::linear, {dim::q_width, dim::hidden},
     bias_rule::attention_bias, gpu_dtype::bf16, module_id::q_proj, false},
    {module_id::k_proj, family::text_layer, "self_attn.k_proj", role::linear, {dim::kv_width, dim::hidden},
     bias_rule::attention_bias, gpu_dtype::bf16, module_id::q_proj, false},
    {module_id::v_proj, family::text_layer, "self_attn.v_proj", role::linear, {dim::kv_width, dim::hidden},
     bias_rule::attention_bias, gpu_dtype::bf16, module_id::q_proj, false},
    {module_id::o_proj, family::text_layer, "self_attn.o_proj", role::linear, {dim::hidden, dim::q_width},
     bias_rule::attention_bias, gpu_dtype::bf16, module_id::o_proj, false},
    {module_id::q_norm, family::text_layer, "self_attn.q_norm", role::rms_norm, {dim::head_dim},
     bias_rule::none, gpu_dtype::f32, module_id::q_norm, false},
    {module_id::k_norm, family::text_layer, "self_attn.k_norm", role::rms_norm, {dim::head_dim},
     bias_rule::none, gpu_dtype::f32, module_id::k_norm, false},
    {module_id::gate_proj, family::text_layer, "mlp.gate_proj", role::linear, {dim::intermediate, dim::hidden},
     bias_rule::none, gpu_dtype::bf16, module_id::gate_proj, false},
    {module_id::up_proj, family::text_layer, "mlp.up_proj", role::linear, {dim::intermediate, dim::hidden},
     bias_rule::none, gpu_dtype::bf16, module_id::gate_proj, false},
    {module_id::down_proj, family::text_layer, "mlp.down_proj", role::linear, {dim::hidden, dim::intermediate},
     bias_rule::none, gpu_dtype::bf16, module_id::down_proj, false},
    {module_id::input_layernorm, family::text_layer, "input_layernorm", role::rms_norm, {dim::hidden},
     bias_rule::none, gpu_dtype::f32, module_id::input_layernorm, false},
    {module_id::post_attention_layernorm, family::text_layer, "post_attention_layernorm", role::rms_norm, {dim::hidden},
     bias_rule::none, gpu_dtype::f32, module_id::post_attention_layernorm, false},

    {module_id::final_norm, family::text_tail, norm_name, role::rms_norm, {dim::hidden},
     bias_rule::none, gpu_dtype::f32, module_id::final_norm, false},

    {module_id::lm_head, family::head, lm_head_name, role::linear, {dim::vocab, dim::hidden},
     bias_rule::none, gpu_dtype::bf16, module_id::lm_head, true},
    // clang-format on
}};

// The tables are indexed by their enums, and a family's rows are contiguous.
constexpr bool rows_in_enum_order() {
  const auto indexed = [](const auto& table) {
    for (std::size_t i = 0; i < table.size(); ++i) {
      if (static_cast<std::size_t>(table[i].id) != i) return false;
    }
    return true;
  };
  for (std::size_t i = 1; i < modules.size(); ++i) {
    if (modules[i].unit < modules[i - 1].unit) return false;
  }
  return indexed(modules) && indexed(families) && indexed(parts);
}
static_assert(rows_in_enum_order());

constexpr const module_spec& spec(module_id id) { return modules[static_cast<std::size_t>(id)]; }
constexpr const family_spec& spec(family id) { return families[static_cast<std::size_t>(id)]; }
constexpr const part_spec& spec(model_part id) { return parts[static_cast<std::size_t>(id)]; }

// The rows of one family, in order.
constexpr std::span<const module_spec> modules_of(family unit) {
  std::size_t first = 0;
  while (first < modules.size() && modules[first].unit != unit) ++first;
  std::size_t last = first;
  while (last < modules.size() && modules[last].unit == unit) ++last;
  return std::span<const module_spec>(modules).subspan(first, last - first);
}

// Whether member tables (rows with a .module) name every module of `unit` exactly once and
// nothing else: the compile-time check that a weight struct binds the whole family.
template <class... Tables>
constexpr bool covers_family(family unit, const Tables&... tables) {
  std::size_t total = 0;
  ((total += std::size(tables)), ...);
  if (total != modules_of(unit).size()) return false;
  for (const module_spec& row : modules_of(unit)) {
    std::size_t seen = 0;
    const auto count_in = [&](const auto& table) {
      for (const auto& entry : table) seen += entry.module == row.id ? 1 : 0;
    };
    (count_in(tables), ...);
    if (seen != 1) return false;
  }
  return true;
}

constexpr bool quantizable(const module_spec& m) { return m.kind == role::linear || m.kind == role::conv3d; }
constexpr bool is_norm(const module_spec& m) { return m.kind == role::layer_norm || m.kind == role::rms_norm; }

inline bool has_bias(const module_spec& m, const config& cfg) {
  return m.bias == bias_rule::always || (m.bias == bias_rule::attention_bias && cfg.text.attention_bias);
}

// Whether the checkpoint stores the module's weight (a tied lm_head is embed_tokens').
inline bool weight_stored(const module_spec& m, const config& cfg) {
  return !(m.tied_to_embedding && cfg.tie_word_embeddings);
}

// The indexed path of a family without its trailing index placeholder ("layers.").
constexpr std::string_view list_stem(const family_spec& f) { return f.list.substr(0, f.list.size() - 1); }

// Name prefix of one instance of a family (index -1: the unindexed one), e.g.
// model.language_model.layers.3. for layer 3.
inline std::string instance_prefix(family unit, std::int64_t index = -1) {
  const family_spec& f = spec(unit);
  std::string out(spec(f.part).root);
  if (index >= 0) {
    out.append(list_stem(f)).append(std::to_string(index)).append(".");
  } else if (!f.single.empty()) {
    out.append(f.single).append(".");
  }
  return out;
}

// Full module path, e.g. model.visual.blocks.0.attn.qkv or lm_head.
inline std::string module_path(module_id id, std::int64_t index = -1) {
  const module_spec& m = spec(id);
  return instance_prefix(m.unit, index).append(m.name);
}

inline std::string tensor_name(module_id id, std::int64_t index = -1, tensor_kind kind = tensor_kind::weight) {
  return module_path(id, index).append(kind == tensor_kind::weight ? weight_suffix : bias_suffix);
}

inline shape weight_shape(const config& cfg, module_id id, std::int64_t index = -1) {
  shape out;
  for (const dim d : spec(id).weight_dims) {
    if (d == dim::end) break;
    out.push_back(extent(d, cfg, index));
  }
  return out;
}

// A bias (or a LayerNorm's shift) has one entry per output row of the weight.
inline shape tensor_shape(const config& cfg, module_id id, std::int64_t index, tensor_kind kind) {
  shape s = weight_shape(cfg, id, index);
  if (kind == tensor_kind::bias) s.resize(1);
  return s;
}

// One module instance: what a forward pass reports to observers (named only when one listens).
struct module_ref {
  module_id module;
  std::int64_t index = -1;
};

inline std::string module_path(const module_ref& m) { return module_path(m.module, m.index); }

// One tensor of the model: module, instance and weight or bias.
struct tensor_ref {
  module_id module;
  std::int64_t index = -1;
  tensor_kind kind = tensor_kind::weight;
};

inline std::string tensor_name(const tensor_ref& t) { return tensor_name(t.module, t.index, t.kind); }
inline shape tensor_shape(const config& cfg, const tensor_ref& t) { return tensor_shape(cfg, t.module, t.index, t.kind); }
constexpr model_part part_of(module_id id) { return spec(spec(id).unit).part; }

// The instances of a family, in order: the unindexed one (-1) first, then 0..count-1.
template <class F>
void for_each_instance(const config& cfg, family unit, F&& f) {
  const family_spec& fam = spec(unit);
  if (fam.has_single) f(std::int64_t{-1});
  const std::int64_t n = fam.count(cfg);
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

// Every module instance in named_modules order: f(const module_spec&, index).
template <class F>
void for_each_module(const config& cfg, F&& f) {
  for (const family_spec& fam : families) {
    for_each_instance(cfg, fam.id, [&](std::int64_t index) {
      for (const module_spec& m : modules_of(fam.id)) f(m, index);
    });
  }
}

// Every tensor the checkpoint stores, in named_parameters order: f(const tensor_ref&).
template <class F>
void for_each_tensor(const config& cfg, F&& f) {
  for_each_module(cfg, [&](const module_spec& m, std::int64_t index) {
    if (weight_stored(m, cfg)) f(tensor_ref{m.id, index, tensor_kind::weight});
    if (has_bias(m, cfg)) f(tensor_ref{m.id, index, tensor_kind::bias});
  });
}

namespace detail {

// Strips `head` from the front of `s`; false when `s` does not start with it.
inline bool consume(std::string_view& s, std::string_view head) {
  if (!s.starts_with(head)) return false;
  s.remove_prefix(head.size());
  return true;
}

// Strips an indexed instance's path (list_stem, the index, a dot) and returns the index.
inline std::optional<std::int64_t> consume_index(std::string_view& s, const family_spec& f) {
  std::string_view rest = s;
  if (f.list.empty() || !consume(rest, list_stem(f))) return std::nullopt;
  std::int64_t index = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), index);
  if (ec != std::errc() || end == rest.data() || index < 0) return std::nullopt;
  rest.remove_prefix(static_cast<std::size_t>(end - rest.data()));
  if (!consume(rest, ".")) return std::nullopt;
  s = rest;
  return index;
}

inline std::optional<tensor_ref> match_module(std::string_view rest, family unit, std::int64_t index) {
  for (const module_spec& m : modules_of(unit)) {
    std::string_view tail = rest;
    if (!consume(tail, m.name)) continue;
    if (tail == weight_suffix) return tensor_ref{m.id, index, tensor_kind::weight};
    if (tail == bias_suffix && m.bias != bias_rule::none) return tensor_ref{m.id, index, tensor_kind::bias};
  }
  return std::nullopt;
}

}  // namespace detail

// The schema row a full tensor name belongs to (config-independent: any index is accepted);
// nullopt for a name the model does not have.
inline std::optional<tensor_ref> find_tensor(std::string_view name) {
  for (const family_spec& fam : families) {
    std::string_view rest = name;
    if (!detail::consume(rest, spec(fam.part).root)) continue;
    if (fam.has_single) {
      std::string_view single = rest;
      if (fam.single.empty() || (detail::consume(single, fam.single) && detail::consume(single, "."))) {
        if (const auto found = detail::match_module(single, fam.id, -1)) return found;
      }
    }
    std::string_view indexed = rest;
    if (const auto index = detail::consume_index(indexed, fam)) {
      if (const auto found = detail::match_module(indexed, fam.id, *index)) return found;
    }
  }
  return std::nullopt;
}

}  // namespace schema

}  // namespace aq::qwen3_vl
