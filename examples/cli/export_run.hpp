// aq-export's work as one call, shared by the driver and its tests: everything checked and the
// export planned before any output exists (refusals write nothing), then the folder written
// staged beside the target and published in one rename (output_set).
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/thread_pool.hpp"
#include "aq/export/export_checkpoint.hpp"
#include "aq/export/export_plan.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/search/recipe_assignment.hpp"
#include "aq/search/search_space.hpp"
#include "cli/output_set.hpp"
#include "cli/preflight.hpp"

namespace aq::autoquant {

struct export_options {
  std::string model_dir, recipes, state, output_dir;
  hf_export::checkpoint_layout layout = hf_export::checkpoint_layout::modelopt;
  module_root root = module_root::whole;
  unsigned threads = 0;  // 0: all hardware threads
};

// The plan of the mix in `o.recipes` over the model of `cfg`, with the amax of `o.state`.
inline hf_export::export_plan plan_export(const export_options& o, const qwen3_vl::config& cfg) {
  const recipe_assignment given = read_recipe_assignment(o.recipes);
  const std::vector<std::string> formats = recipe_names(given);
  const std::vector<quantizable_module> modules = qwen3_vl::quantizable_modules(cfg);
  const search_space space = make_search_space(modules, formats, {}, o.root);
  const std::vector<std::size_t> chosen = assign_groups(space, given);
  const safetensors_file state(o.state, readable_dtypes);
  return hf_export::make_export_plan(space, chosen, state, o.state, o.layout, modules);
}

inline void run_export(const export_options& o) {
  namespace fs = std::filesystem;
  const fs::path model_dir(o.model_dir);
  check_input_directory("--model", model_dir);
  check_input_file("--model", model_dir / "config.json");
  check_input_file("--recipes", o.recipes);
  check_input_file("--state", o.state);
  const qwen3_vl::config cfg = read_qwen3_vl_config(model_dir);
  const hf_export::export_plan plan = plan_export(o, cfg);
  const safetensors_checkpoint checkpoint(model_dir, hf_export::any_safetensors_dtype);
  hf_export::check_export_inputs(plan, checkpoint);
  // Files an export in either layout writes: an earlier export is replaced whatever its layout.
  const std::vector<std::string> names =
      hf_export::export_file_names(model_dir, checkpoint, hf_export::checkpoint_layout::modelopt);
  output_set outputs;
  outputs.set_directory("--output-dir", o.output_dir, [&](std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  });
  outputs.check();
  outputs.stage();
  thread_pool pool(o.threads);
  hf_export::write_export(model_dir, checkpoint, plan, outputs.directory(), pool);
  outputs.publish();
}

}  // namespace aq::autoquant
