// The files of a run: <scheme>_quant_manifest.json, per-layer-sensitivity.{md,json} (ModelOpt's
// formats, plus aq's chosen_recipes and pareto_front fields), <scheme>_autoquant_state.safetensors
// (amax of the chosen recipes' quantizers) and a run log with the time of each stage. They are
// written into a staged folder and published as one set (cli/output_set.hpp, docs/outputs.md).
#pragma once

#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "aq/core/atomic_file.hpp"
#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/report/evaluation_files.hpp"
#include "aq/report/evaluation_model.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/sensitivity_report.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

inline std::string state_filename(const std::string& scheme) { return scheme + "_autoquant_state.safetensors"; }
inline std::string run_log_filename(const std::string& scheme) { return scheme + "_autoquant.log"; }

// Whether `name` is a file a run writes into its output folder (any scheme's), or a temporary
// an older run left there: such a folder may be replaced; one holding anything else may not.
inline bool is_report_file(std::string_view name) {
  const std::size_t tmp = name.rfind(".tmp.");
  const bool temporary = tmp != std::string_view::npos && tmp + 5 < name.size() &&
                         name.find_first_not_of("0123456789", tmp + 5) == std::string_view::npos;
  return name == io::sensitivity_json_filename || name == io::sensitivity_md_filename ||
         name.ends_with("_quant_manifest.json") || name.ends_with("_autoquant_state.safetensors") ||
         name.ends_with("_autoquant.log") || io::is_evaluation_file(name) || temporary;
}

// amax in fp32 (aq's model computes in fp32; ModelOpt keeps amax in the bf16 model dtype), with
// the chosen recipe of every group as metadata ("<group hparam name>": "<aq recipe name>").
inline std::string render_state(const search_space& space, const autoquant_result& result) {
  safetensors_writer writer;
  for (const quantizer_amax& q : result.state) writer.add(q.name, q.shape, std::span<const float>(q.values));
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    writer.set_metadata(space.groups[g].name, std::string(space.candidates[result.chosen[g]].recipe->name));
  }
  writer.set_metadata("format", "aq.autoquant_state/v1");
  return writer.serialize();
}

// The evaluation's table in the run log: one line per measured mix.
inline std::string render_evaluation_summary(const io::evaluation_report& e, double seconds) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line), "evaluation: %lld held-out samples, %lld tokens, %.3f s\n",
                static_cast<long long>(e.data.samples), static_cast<long long>(e.data.tokens), seconds);
  out += line;
  for (const io::mix_evaluation& m : e.mixes) {
    std::snprintf(line, sizeof(line), "  %-40s bits %7.4f  predicted %-12.6g  KL %-12.6g  ppl %-10.6g  top-1 %.4f\n",
                  m.name.c_str(), m.effective_bits, m.predicted_score, m.mean_kl, m.perplexity, m.top1_agreement);
    out += line;
  }
  if (e.spearman_score_kl) {
    std::snprintf(line, sizeof(line), "  Spearman(predicted score, measured KL) = %.4f\n", *e.spearman_score_kl);
    out += line;
  }
  return out;
}

// Human-readable summary with per-stage timings (timings make it differ run to run; the other
// files do not).
inline std::string render_run_log(const search_space& space, const autoquant_result& result,
                                  const engine_options& options, double load_seconds = 0.0) {
  std::string log;
  char line[512];
  const auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof(line), fmt, args...);
    log += line;
  };
  add("scheme: %s\n", options.scheme_name.c_str());
  add("method: %s\n", std::string(to_string(options.method)).c_str());
  std::string formats;
  for (std::size_t c = 0; c < space.candidates.size(); ++c) {
    formats += (c ? ", " : "") + std::string(space.candidates[c].recipe->name) + " = " + space.display(c, options.custom_names);
  }
  add("candidates: %s\n", formats.c_str());
  std::size_t disabled = 0;
  for (const search_group& g : space.groups) disabled += g.disabled ? 1 : 0;
  add("modules: %zu, groups: %zu (%zu disabled), weights: %lld (%lld disabled)\n", space.modules.size(),
      space.groups.size(), disabled, static_cast<long long>(space.total_params),
      static_cast<long long>(space.disabled_params));
  add("budget: %.17g requested, %.17g searched (scheme.auto_quantize_bits)\n", options.effective_bits, result.budget_bits);
  add("steps: %lld calibration, %lld scoring\n", static_cast<long long>(result.num_calib_steps),
      static_cast<long long>(result.num_score_steps));
  add("result: effective bits %.17g, total score %.17g, satisfied %s, pareto points %zu\n",
      result.allocation.effective_bits, result.allocation.total_score, result.allocation.is_satisfied ? "yes" : "no",
      result.report.pareto_front ? result.report.pareto_front->size() : std::size_t{0});
  if (space.disabled_params > 0 && space.disabled_params < space.total_params) {
    add("searched groups: effective bits %.17g over %lld weights (the disabled ones stay at 16 bits)\n",
        searched_effective_bits(space, result.chosen),
        static_cast<long long>(space.total_params - space.disabled_params));
  }
  add("timing [s]: model %.3f, calibration %.3f, scoring %.3f, search %.3f\n", load_seconds,
      result.timings.calibration, result.timings.scoring, result.timings.search);
  if (result.evaluation) log += render_evaluation_summary(*result.evaluation, result.timings.evaluation);
  return log;
}

// Writes the manifest, the two sensitivity reports and the state file into `directory`
// (created if needed), each atomically. Drivers pass an output_set's staged folder, so that the
// files appear at the --output-dir only together, when the set is published.
inline void write_outputs(const std::filesystem::path& directory, const search_space& space,
                          const autoquant_result& result) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) throw error(directory.string() + ": cannot create output directory: " + ec.message());
  io::write_quant_manifest(directory / io::quant_manifest_filename(result.report.scheme), result.report);
  io::write_sensitivity_reports(directory, result.report);
  write_file_atomic(directory / state_filename(result.report.scheme.name), render_state(space, result));
}

}  // namespace aq::autoquant
