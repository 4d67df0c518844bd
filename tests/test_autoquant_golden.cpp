// Golden run: a fixed tiny AutoQuant run (generated model, seed 3, bundled captions through a toy
// encoder) against the manifest and reports checked in under fixtures/autoquant/. Structure,
// formats, costs and choices must match exactly, scores to rel. 1e-5 (fp32 GEMMs may round
// differently on other CPUs); the golden reports re-render byte for byte from the golden manifest
// (the seeds' formats). Regenerate with AQ_UPDATE_GOLDEN=1.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/report/sensitivity_report.hpp"

#include "cli/default_model.hpp"
#include "cli/outputs.hpp"

namespace test_autoquant_golden {

namespace {

using namespace aq;
namespace fs = std::filesystem;

const fs::path golden_dir = fs::path(AQ_TEST_FIXTURES) / "autoquant";

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "missing golden file " << path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

autoquant::autoquant_result golden_run(autoquant::search_space& space) {
  qwen3_vl::config cfg = autoquant::default_model_config();
  cfg.text.vocab_size = 101;
  cfg.text.hidden_size = 32;
  cfg.text.intermediate_size = 64;
  cfg.text.head_dim = 8;
  cfg.text.mrope_section = {2, 1, 1};
  cfg.image_token_id = 95;
  static const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 3);
  static const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<std::string> captions =
      io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt", 16);
  const auto encode = [](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % 90));
    return ids;
  };
  io::padding_options o;
  o.max_length = 24;
  o.pad_id = 100;
  static const std::vector<io::calib_batch> batches = io::make_text_calib_batches(captions, encode, 8, o);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);
  const std::vector<std::string> formats{"w8a4", "int8_w8a8", "fp8_e4m3"};
  space = autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats,
                                       autoquant::scope_patterns(autoquant::scope_preset::lm));
  autoquant::engine_options e;
  e.effective_bits = 8.0;
  e.num_calib_steps = io::num_calib_steps(static_cast<std::int64_t>(batches.size()));
  e.num_score_steps = io::num_score_steps(static_cast<std::int64_t>(batches.size()), 8);
  e.scheme_name = "golden_autoquant_lm";
  e.model_id = "builtin:golden";
  io::dataset_info d;
  d.name = "vlm_coco2017_captions";
  d.size = "small";
  d.max_calib_samples = 16;
  d.num_calib_samples = 16;
  d.calib_seq_len = 24;
  d.batch_size = 8;
  d.num_calib_batches = 2;
  e.dataset = d;
  autoquant::cpu_scoring_backend backend(space, runner);
  return autoquant::run_autoquant(space, backend, e);
}

}  // namespace

TEST_CASE("a fixed tiny run reproduces the golden manifest and reports") {
  autoquant::search_space space;
  const autoquant::autoquant_result r = golden_run(space);
  if (std::getenv("AQ_UPDATE_GOLDEN") != nullptr) {
    autoquant::write_outputs(golden_dir, space, r);
    fs::remove(golden_dir / autoquant::state_filename(r.report.scheme.name));
  }
  const std::string manifest_text = read(golden_dir / "golden_autoquant_lm_quant_manifest.json");
  const io::report_model golden = io::parse_quant_manifest(manifest_text, "golden manifest");

  // The golden files are in the seeds' formats: re-rendering the parsed manifest gives them back.
  CHECK(io::render_quant_manifest(golden) == manifest_text);
  CHECK(io::render_sensitivity_md(golden) == read(golden_dir / "per-layer-sensitivity.md"));
  CHECK(io::render_sensitivity_json(golden) == read(golden_dir / "per-layer-sensitivity.json"));

  const io::report_model& now = r.report;
  CHECK(now.scheme.name == golden.scheme.name);
  CHECK(now.scheme.auto_quantize_bits == golden.scheme.auto_quantize_bits);
  CHECK(now.scheme.quant_formats == golden.scheme.quant_formats);
  CHECK(now.autoquant_state.effective_bits == golden.autoquant_state.effective_bits);
  CHECK(now.autoquant_state.is_satisfied == golden.autoquant_state.is_satisfied);
  CHECK(now.autoquant_state.score == doctest::Approx(golden.autoquant_state.score).epsilon(1e-5));
  REQUIRE(now.groups.size() == golden.groups.size());
  for (std::size_t g = 0; g < now.groups.size(); ++g) {
    CHECK(now.groups[g].name == golden.groups[g].name);
    REQUIRE(now.groups[g].candidates.size() == golden.groups[g].candidates.size());
    for (std::size_t c = 0; c < now.groups[g].candidates.size(); ++c) {
      CHECK(now.groups[g].candidates[c].format == golden.groups[g].candidates[c].format);
      CHECK(now.groups[g].candidates[c].cost == golden.groups[g].candidates[c].cost);
      CHECK(now.groups[g].candidates[c].score ==
            doctest::Approx(golden.groups[g].candidates[c].score).epsilon(1e-5));
    }
  }
  REQUIRE(golden.chosen_recipes);
  CHECK(now.chosen_recipes->size() == golden.chosen_recipes->size());
  for (std::size_t g = 0; g < golden.chosen_recipes->size(); ++g) {
    CHECK((*now.chosen_recipes)[g].format == (*golden.chosen_recipes)[g].format);
  }
  REQUIRE(golden.pareto_front);
  CHECK(now.pareto_front->size() == golden.pareto_front->size());

  // The seeds' Markdown layout: title underlined to its length, dataset block, fixed table header.
  const std::string md = read(golden_dir / "per-layer-sensitivity.md");
  const std::string title = "AutoQuant Layer Sensitivity (golden_autoquant_lm)";
  CHECK(md.starts_with("\n" + title + "\n" + std::string(title.size(), '=') + "\n\n\n**Scheme:** `golden_autoquant_lm`\n"));
  CHECK(md.find("\n- **Calibration samples:** `16` / `16` (used / max)\n") != std::string::npos);
  CHECK(md.find("\n|Layer|Num Bits|Sensitivity|Size Cost|\n| :--- | :--- | :--- | :--- |\n") != std::string::npos);
  CHECK(md.find("|4.0, 8.0, 8.0|") != std::string::npos);
  CHECK(md.ends_with("|\n"));
}

}  // namespace test_autoquant_golden
