// The parameters a Qwen3-VL checkpoint must hold, computed from the config through the tensor
// schema (names and shapes as transformers' Qwen3VLForConditionalGeneration registers them), and
// the binding check of a checkpoint against that list: the gate between reading safetensors and
// running the model.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/config.hpp"
#include "aq/model/qwen3_vl/schema.hpp"

namespace aq::qwen3_vl {

struct parameter_spec {
  std::string name;
  std::vector<std::int64_t> shape;
  model_part part = model_part::text;

  // Element count; a shape whose count overflows int64 is an error naming the parameter.
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t extent : shape) {
      if (__builtin_mul_overflow(n, extent, &n)) {
        throw error("parameter " + name + ": shape " + shape_string(shape) + " has more elements than int64 holds");
      }
    }
    return n;
  }
};

inline const std::string lm_head_weight_name = schema::tensor_name(schema::module_id::lm_head);

inline parameter_spec parameter_of(const config& cfg, const schema::tensor_ref& t) {
  return {schema::tensor_name(t), schema::tensor_shape(cfg, t), schema::part_of(t.module)};
}

// Every parameter in named_parameters order: vision tower, text decoder, then lm_head, which is
// listed only when untied (a tied head is embed_tokens; checkpoints normally omit it).
inline std::vector<parameter_spec> expected_parameters(const config& cfg) {
  std::vector<parameter_spec> out;
  schema::for_each_tensor(cfg, [&](const schema::tensor_ref& t) { out.push_back(parameter_of(cfg, t)); });
  return out;
}

// Number of parameter tensors and their elements.
struct parameter_totals {
  std::int64_t tensors = 0;
  std::int64_t elements = 0;
};

// Parameter counts: each stored weight once (a tied lm_head adds nothing to `total`).
struct parameter_counts {
  std::int64_t vision = 0;
  std::int64_t text = 0;     // decoder incl. embed_tokens and final norm, without an untied lm_head
  std::int64_t lm_head = 0;  // weights of the output projection (shared with embed_tokens when tied)
  bool lm_head_tied = true;
  std::int64_t total = 0;
};

namespace detail {

// sum += times x part, refusing an int64 overflow.
inline void add_totals(parameter_totals& sum, const parameter_totals& part, std::int64_t times = 1) {
  for (const auto& [to, from] : {std::pair{&sum.tensors, part.tensors}, std::pair{&sum.elements, part.elements}}) {
    std::int64_t scaled = 0;
    if (__builtin_mul_overflow(times, from, &scaled) || __builtin_add_overflow(*to, scaled, to)) {
      throw error("qwen3_vl parameter count: total overflows int64");
    }
  }
}

// The stored tensors of each model part, from the config alone (no full list is built): indexed
// instances of a family (layers, blocks, DeepStack mergers) all have the shapes of instance 0, so
// its tensors are counted once and scaled.
inline std::array<parameter_totals, schema::parts.size()> part_totals(const config& cfg) {
  std::array<parameter_totals, schema::parts.size()> totals{};
  const auto add_instance = [&](const schema::family_spec& fam, std::int64_t index, std::int64_t times) {
    parameter_totals one;
    for (const schema::module_spec& m : schema::modules_of(fam.id)) {
      for (const schema::tensor_kind kind : {schema::tensor_kind::weight, schema::tensor_kind::bias}) {
        const bool stored = kind == schema::tensor_kind::weight ? schema::weight_stored(m, cfg) : schema::has_bias(m, cfg);
        if (stored) add_totals(one, {1, parameter_of(cfg, {m.id, index, kind}).numel()});
      }
    }
    add_totals(totals[static_cast<std::size_t>(fam.part)], one, times);
  };
  for (const schema::family_spec& fam : schema::families) {
    if (fam.has_single) add_instance(fam, -1, 1);
    if (!fam.list.empty()) add_instance(fam, 0, fam.count(cfg));
  }
  return totals;
}

}  // namespace detail

inline parameter_totals expected_totals(const config& cfg) {
  parameter_totals totals;
  for (const parameter_totals& part : detail::part_totals(cfg)) detail::add_totals(totals, part);
  return totals;
}

inline parameter_counts count_parameters(const config& cfg) {
  const auto parts = detail::part_totals(cfg);
  parameter_counts counts;
  counts.vision = parts[static_cast<std::size_t>(model_part::vision)].elements;
  counts.text = parts[static_cast<std::size_t>(model_part::text)].elements;
  counts.lm_head = parameter_of(cfg, {schema::module_id::lm_head}).numel();
  counts.lm_head_tied = cfg.tie_word_embeddings;
  counts.total = expected_totals(cfg).elements;
  return counts;
}

// Every way `tensors` (sorted by name, as a checkpoint holds them) differs from the expected
// parameters, one line each: missing tensors (in parameter order), mis-shaped tensors, then
// unexpected tensors (by name). A tied config tolerates a stored lm_head.weight of the right
// shape: transformers overwrites it with embed_tokens on load.
inline std::vector<std::string> parameter_problems(const config& cfg, std::span<const tensor_view> tensors) {
  std::vector<parameter_spec> expected = expected_parameters(cfg);
  if (cfg.tie_word_embeddings) {
    expected.push_back(parameter_of(cfg, {schema::module_id::lm_head}));
  }
  std::set<std::string_view> expected_names;
  std::vector<std::string> problems;
  std::vector<std::string> misshaped;
  for (const parameter_spec& spec : expected) {
    expected_names.insert(spec.name);
    const tensor_view* tensor = find_tensor_view(tensors, spec.name);
    const bool optional = cfg.tie_word_embeddings && spec.name == lm_head_weight_name;
    if (tensor == nullptr) {
      if (!optional) problems.push_back("missing tensor " + spec.name + " " + shape_string(spec.shape));
    } else if (!std::ranges::equal(tensor->shape, spec.shape)) {
      misshaped.push_back("tensor " + spec.name + ": shape " + shape_string(tensor->shape) + ", expected " +
                          shape_string(spec.shape));
    }
  }
  problems.insert(problems.end(), misshaped.begin(), misshaped.end());
  for (const tensor_view& tensor : tensors) {
    if (!expected_names.contains(tensor.name)) {
      problems.push_back("unexpected tensor " + std::string(tensor.name) + " " + shape_string(tensor.shape));
    }
  }
  return problems;
}

// At most this many problems are spelled out; the rest are counted ("and N more").
inline constexpr std::size_t max_listed_problems = 20;

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
  return checkpoint.at(cfg.tie_word_embeddings ? schema::tensor_name(schema::module_id::embed_tokens) : lm_head_weight_name);
}

}  // namespace aq::qwen3_vl
