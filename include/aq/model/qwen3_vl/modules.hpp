// Qwen3-VL's quantizable modules in ModelOpt's order (named_modules of
// Qwen3VLForConditionalGeneration: vision tower, text decoder layers, lm_head) with weight shapes,
// read from the tensor schema: what calibration, scoring and the allocator iterate over. Grouping
// is model/quantizable_modules.hpp (the schema's group column states the same groups).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "aq/model/quantizable_modules.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::qwen3_vl {

// Every Linear with a 2-D weight plus the Conv3d patch embedding (ModelOpt quantizes
// QuantConv3d too): the schema's quantizable rows in named_modules order. lm_head is a Linear
// even when its weight is tied to embed_tokens.
inline std::vector<quantizable_module> quantizable_modules(const config& cfg) {
  std::vector<quantizable_module> out;
  schema::for_each_module(cfg, [&](const schema::module_spec& m, std::int64_t index) {
    if (!schema::quantizable(m)) return;
    const module_kind kind = m.kind == schema::role::conv3d ? module_kind::conv3d : module_kind::linear;
    out.push_back({schema::module_path(m.id, index), kind, schema::weight_shape(cfg, m.id, index)});
  });
  return out;
}

// Which part of the model a module or parameter name belongs to.
inline model_part part_of(std::string_view name) {
  if (name.starts_with(schema::spec(model_part::vision).root)) return model_part::vision;
  if (name.starts_with(schema::spec(model_part::text).root)) return model_part::text;
  return model_part::lm_head;
}

// The decoder's quantizable modules and lm_head in module order, without the vision tower: what a
// text-only run observes.
inline std::vector<quantizable_module> text_quantizable_modules(const config& cfg) {
  std::vector<quantizable_module> out = quantizable_modules(cfg);
  std::erase_if(out, [](const quantizable_module& m) { return part_of(m.name) == model_part::vision; });
  return out;
}

}  // namespace aq::qwen3_vl
