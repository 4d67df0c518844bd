// Fuzzes the recipe file reader (aq/search/recipe_assignment.hpp): manifest or recipe map,
// recipe spellings and their suffixes, CUSTOM names read through scheme.quant_formats, fnmatch
// patterns, and the group checks of assign_groups against one fixed search space.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aq/search/recipe_assignment.hpp"
#include "aq/search/search_space.hpp"

namespace {

// One decoder layer's modules (fused q/k/v and gate/up groups), a vision module that is
// disabled, and lm_head; candidates w4a8, fp8_e4m3, int8_w8a8, NONE.
const aq::autoquant::search_space& fixed_space() {
  static const aq::autoquant::search_space space = [] {
    const std::string layer = "model.language_model.layers.0.";
    std::vector<aq::quantizable_module> modules = {
        {"model.visual.blocks.0.attn.qkv", aq::module_kind::linear, {24, 8}},
        {layer + "self_attn.q_proj", aq::module_kind::linear, {8, 8}},
        {layer + "self_attn.k_proj", aq::module_kind::linear, {4, 8}},
        {layer + "self_attn.v_proj", aq::module_kind::linear, {4, 8}},
        {layer + "self_attn.o_proj", aq::module_kind::linear, {8, 8}},
        {layer + "mlp.gate_proj", aq::module_kind::linear, {16, 8}},
        {layer + "mlp.up_proj", aq::module_kind::linear, {16, 8}},
        {layer + "mlp.down_proj", aq::module_kind::linear, {8, 16}},
        {"lm_head", aq::module_kind::linear, {32, 8}},
    };
    const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8", "w4a8"};
    return aq::autoquant::make_search_space(std::move(modules), formats, {"model.visual*"});
  }();
  return space;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const aq::autoquant::search_space& space = fixed_space();
  aq::autoquant::recipe_assignment assignment;
  try {
    assignment = aq::autoquant::parse_recipe_assignment(std::string_view(reinterpret_cast<const char*>(data), size),
                                                        "recipes.json");
  } catch (const aq::error&) {
    return 0;  // a rejected file is the expected outcome; anything else crashes the fuzzer
  }
  try {
    (void)aq::autoquant::recipe_names(assignment);
  } catch (const aq::error&) {
  }
  try {
    const std::vector<std::size_t> chosen = aq::autoquant::assign_groups(space, assignment);
    if (chosen.size() != space.groups.size()) __builtin_trap();
    for (std::size_t g = 0; g < chosen.size(); ++g) {
      // Every group gets a candidate; a disabled one never a quantizing recipe.
      if (chosen[g] >= space.candidates.size()) __builtin_trap();
      if (!space.configurable(g) && space.candidates[chosen[g]].recipe->quantizes) __builtin_trap();
    }
  } catch (const aq::error&) {
  }
  return 0;
}
