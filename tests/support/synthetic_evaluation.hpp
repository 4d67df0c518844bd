// A small synthetic run for the evaluation writers' tests and the report screenshot: `groups`
// layer groups with three recipes and NONE, scores spanning several decades, a chosen mix, a
// Pareto front, and ten evaluated mixes (unquantized, three uniform, chosen, five Pareto points).
// One group name and the scheme name hold the characters < & " ' > so escaping is exercised.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "aq/report/evaluation_model.hpp"
#include "aq/report/report_model.hpp"

namespace aq::test {

inline const std::vector<std::string>& synthetic_recipes() {
  static const std::vector<std::string> recipes{
      "NONE(effective-bits: 16.0)", "FP8_DEFAULT_CFG(effective-bits: 8.0)", "INT8_DEFAULT_CFG(effective-bits: 8.0)",
      "NVFP4_DEFAULT_CFG(effective-bits: 4.5)"};
  return recipes;
}
inline constexpr double synthetic_recipe_bits[] = {16.0, 8.0, 8.0, 4.5};

// The group whose name needs escaping.
inline constexpr const char* tricky_group = "model.visual.blocks.0.attn<&\"'>.qkv.quant_recipe";
inline constexpr const char* tricky_scheme = "mix<&\"'>";

inline std::string synthetic_group_name(int g) {
  if (g == 1) return tricky_group;
  static const char* const modules[] = {"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"};
  return "model.language_model.layers." + std::to_string(g / 4) + "." + modules[g % 4] + ".quant_recipe";
}

// Recipe index chosen for group g: NVFP4 mostly, FP8 for every third group, NONE for the first.
inline int synthetic_choice(int g) { return g == 0 ? 0 : g % 3 == 0 ? 1 : 3; }

inline io::report_model synthetic_report_model(int groups = 12) {
  io::report_model model;
  model.scheme.name = tricky_scheme;
  model.scheme.auto_quantize_bits = 6.0;
  model.scheme.quant_formats = {"FP8_DEFAULT_CFG", "INT8_DEFAULT_CFG", "NVFP4_DEFAULT_CFG"};
  model.model_id = "synthetic/qwen3-vl";
  model.autoquant_state.effective_bits = 5.875;
  model.dataset = io::dataset_info{};
  model.dataset->name = "synthetic captions";
  std::vector<io::chosen_recipe> chosen;
  double chosen_score = 0.0;
  for (int g = 0; g < groups; ++g) {
    io::group_sensitivity group{synthetic_group_name(g), {}};
    const double sensitivity = std::pow(10.0, (g % 5) - 1.0);  // 0.1 .. 1000: several decades
    const double numel = 4096.0 * (1 + g % 3);
    const double scale[] = {0.0, 1e-4, 1e-3, 1e-1};
    for (std::size_t r = 0; r < synthetic_recipes().size(); ++r) {
      group.candidates.push_back({synthetic_recipes()[r], sensitivity * scale[r],
                                  numel * synthetic_recipe_bits[r] / 16.0, synthetic_recipe_bits[r]});
    }
    const int pick = synthetic_choice(g);
    chosen.push_back({group.name, synthetic_recipes()[static_cast<std::size_t>(pick)]});
    chosen_score += group.candidates[static_cast<std::size_t>(pick)].score;
    model.groups.push_back(std::move(group));
  }
  model.autoquant_state.score = chosen_score;
  model.chosen_recipes = chosen;
  model.pareto_front = std::vector<io::pareto_point>{{4.5, 120.0}, {5.0, 40.0},  {5.5, 9.0},  {6.0, 1.5},
                                                     {7.0, 0.2},   {8.0, 0.02}, {12.0, 0.002}, {16.0, 0.0}};
  return model;
}

inline io::mix_evaluation synthetic_mix(std::string name, io::mix_kind kind, int groups, double bits, double score,
                                        double kl, int uniform_recipe = -1) {
  io::mix_evaluation m;
  m.name = std::move(name);
  m.kind = kind;
  m.effective_bits = bits;
  m.predicted_score = score;
  m.mean_kl = kl;
  m.perplexity = 12.5 * std::exp(kl);
  m.top1_agreement = 1.0 - std::min(0.9, 2.0 * kl);
  for (int g = 0; g < groups; ++g) {
    const int r = uniform_recipe >= 0 ? uniform_recipe : kind == io::mix_kind::chosen ? synthetic_choice(g) : (g % 2 ? 3 : 1);
    m.recipes.push_back(synthetic_recipes()[static_cast<std::size_t>(r)]);
  }
  return m;
}

inline io::evaluation_report synthetic_evaluation(int groups = 12) {
  using io::mix_kind;
  io::evaluation_report e;
  e.data = {"held_out<&>.jsonl", 256, 64, 3, 8192};
  e.mixes.push_back(synthetic_mix("unquantized", mix_kind::unquantized, groups, 16.0, 0.0, 0.0, 0));
  e.mixes.push_back(synthetic_mix("uniform FP8_DEFAULT_CFG", mix_kind::uniform, groups, 8.0, 0.011, 0.004, 1));
  e.mixes.push_back(synthetic_mix("uniform INT8_DEFAULT_CFG", mix_kind::uniform, groups, 8.0, 0.11, 0.009, 2));
  e.mixes.push_back(synthetic_mix("uniform NVFP4_DEFAULT_CFG", mix_kind::uniform, groups, 4.5, 111.1, 0.21, 3));
  e.mixes.push_back(synthetic_mix("chosen", mix_kind::chosen, groups, 5.875, 1.7, 0.031));
  const double pareto[][3] = {{5.0, 40.0, 0.12}, {5.5, 9.0, 0.07}, {6.0, 1.5, 0.035}, {7.0, 0.2, 0.015}, {8.0, 0.02, 0.006}};
  for (const auto& p : pareto) {
    e.mixes.push_back(synthetic_mix("pareto " + std::to_string(p[0]).substr(0, 3), mix_kind::pareto, groups, p[0], p[1], p[2]));
  }
  e.spearman_score_kl = 0.9636363636363636;
  return e;
}

}  // namespace aq::test
