// Quantizable modules and their groups: the search space of auto-quantization. A module is a
// named Linear (or Conv) layer with its weight shape; modules that must share one recipe form a
// group (q/k/v of one attention, gate/up of one MLP), named as ModelOpt names its hparams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aq {

enum class module_kind { linear, conv3d };

inline std::string_view module_kind_name(module_kind kind) { return kind == module_kind::linear ? "Linear" : "Conv3d"; }

struct quantizable_module {
  std::string name;  // module path, e.g. model.language_model.layers.3.mlp.gate_proj
  module_kind kind = module_kind::linear;
  std::vector<std::int64_t> weight_shape;  // [out, in] (Linear) or [out, c, kt, kh, kw] (Conv3d)

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t extent : weight_shape) n *= extent;
    return n;
  }
};

struct module_group {
  std::string name;                  // first member's name + ".quant_recipe"
  std::vector<std::size_t> members;  // indices into the module list, in module order
  std::int64_t numel = 0;            // weights of all members (the cost of the group at 16 bits)
};

// ModelOpt's grouping rules, first match wins and the group key is the first capture; a module
// matching none is its own group. (q/k/v share; MoE experts share; gate/up share; mixtral, dbrx.)
inline constexpr std::string_view modelopt_grouping_rules[] = {
    R"(^(.*?)\.(q_proj|k_proj|v_proj)$)",
    R"(^(.*?\.mlp\.experts)\.\d+\.(gate_proj|up_proj|down_proj)$)",
    R"(^(.*?)\.(gate_proj|up_proj)$)",
    R"(^(.*?)\.(\d+\.(w1|w2|w3))$)",
    R"(^(.*?)\.((w1_linear|w2_linear|w3_linear)\.\d+)$)",
};

class module_grouper {
 public:
  explicit module_grouper(std::span<const std::string_view> rules = modelopt_grouping_rules) {
    for (const std::string_view rule : rules) rules_.emplace_back(std::string(rule), std::regex::ECMAScript);
  }

  std::string key(const std::string& module_name) const {
    std::smatch match;
    for (const std::regex& rule : rules_) {
      if (std::regex_match(module_name, match, rule)) return match[1].str();
    }
    return module_name;
  }

  // Groups in order of their first member; members in module order.
  std::vector<module_group> group(std::span<const quantizable_module> modules) const {
    std::vector<module_group> groups;
    std::map<std::string, std::size_t> by_key;
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const auto [it, inserted] = by_key.try_emplace(key(modules[i].name), groups.size());
      if (inserted) groups.push_back(module_group{modules[i].name + ".quant_recipe", {}, 0});
      module_group& group = groups[it->second];
      group.members.push_back(i);
      group.numel += modules[i].numel();
    }
    return groups;
  }

 private:
  std::vector<std::regex> rules_;
};

inline std::vector<module_group> group_modules(std::span<const quantizable_module> modules) {
  return module_grouper().group(modules);
}

}  // namespace aq
