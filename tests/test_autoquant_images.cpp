// The image+caption path end to end, as aq-autoquant runs it for a .jsonl calibration file with
// --scope all: JSON lines -> images decoded and preprocessed -> chat prompt with image pads ->
// the built-in default Qwen3-VL (vision tower, mergers, DeepStack) -> calibration, gradient
// scores, allocation -> reports. Text-only data never runs the vision tower; images must.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/image/image.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/report/quant_manifest.hpp"
#include "aq/search/scope.hpp"
#include "aq/search/search_space.hpp"

#include "cli/calib_inputs.hpp"
#include "cli/default_model.hpp"
#include "cli/outputs.hpp"

namespace test_autoquant_images {

namespace {

using namespace aq;
namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh `dir` holding two images (img/grid.png 256 x 256 RGBA; img/photo.jpg 61 x 45, upscaled
// to >= 65536 px) and pairs.jsonl captioning them with `grid_caption` and `photo_caption`.
void write_image_pairs(const fs::path& dir, std::string_view grid_caption, std::string_view photo_caption) {
  fs::remove_all(dir);
  fs::create_directories(dir / "img");
  const fs::path images(AQ_TEST_FIXTURES "/images");
  fs::copy_file(images / "alpha_grid.png", dir / "img" / "grid.png");
  fs::copy_file(images / "jpeg_420.jpg", dir / "img" / "photo.jpg");
  std::ofstream(dir / "pairs.jsonl") << R"({"image": "img/grid.png", "caption": ")" << grid_caption << "\"}\n"
                                     << R"({"image": "img/photo.jpg", "caption": ")" << photo_caption << "\"}\n";
}

}  // namespace

TEST_CASE("image-caption calibration with --scope all gives every vision group a score and writes the reports") {
  const fs::path dir = fs::temp_directory_path() / "aq_test_autoquant_images";
  write_image_pairs(dir, "A grid of coloured squares.", "A small photograph.");

  // What the driver does for a .jsonl file: one sample per batch, images preprocessed for the model.
  const qwen3_vl::config cfg = autoquant::default_model_config();
  const autoquant::generated_model weights = autoquant::make_generated_model(cfg, 0);
  const qwen3_vl::vl_model model(cfg, weights.text, weights.vision);
  const io::tokenizer tok =
      io::tokenizer::from_file(fs::path(AQ_SOURCE_DIR) / "data" / "qwen3-tokenizer" / "tokenizer.json");
  const std::vector<io::calib_batch> batches =
      autoquant::make_image_caption_batches(tok, dir / "pairs.jsonl", 2, /*seq_len=*/32, cfg);
  REQUIRE(batches.size() == 2);
  for (const io::calib_batch& b : batches) {
    CHECK(b.batch_size == 1);
    CHECK(b.vision.grid_thw.size() == 1);
    CHECK(b.seq_len > 32);  // the image pads alone exceed seq_len: no truncation of images
  }

  const std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8"};
  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), formats, autoquant::scope_patterns(autoquant::scope_preset::all));
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);
  autoquant::engine_options o;
  o.effective_bits = 8.0;
  o.num_calib_steps = 2;
  o.num_score_steps = 2;
  o.scheme_name = "images_autoquant_all";
  o.scope = autoquant::scope_preset::all;
  autoquant::cpu_scoring_backend backend(space, runner);
  const autoquant::autoquant_result r = autoquant::run_autoquant(space, backend, o);

  // Every group is searched (nothing disabled), and every vision group - patch embedding, blocks,
  // merger and DeepStack mergers - ran and got a positive, finite score under both recipes.
  std::size_t vision_groups = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    CHECK(space.configurable(g));
    if (space.groups[g].name.rfind("model.visual.", 0) != 0) continue;
    ++vision_groups;
    REQUIRE(r.raw_scores[g].size() == 3);  // fp8, int8, none
    for (std::size_t c = 0; c < 2; ++c) {
      CHECK_MESSAGE((std::isfinite(r.raw_scores[g][c]) && r.raw_scores[g][c] > 0.0), space.groups[g].name);
    }
    CHECK(r.raw_scores[g][2] == 0.0);
  }
  // depth 2 x (qkv, proj, fc1, fc2) + patch_embed + merger (fc1, fc2) + 1 DeepStack merger (fc1, fc2)
  CHECK(vision_groups == 2 * 4 + 1 + 2 + 2);
  CHECK(r.allocation.is_satisfied);
  CHECK(r.allocation.effective_bits == doctest::Approx(8.0).epsilon(1e-12));  // B = 8: all quantized

  const fs::path out = dir / "out";
  autoquant::write_outputs(out, space, r);
  const std::string manifest = read_text(out / io::quant_manifest_filename(r.report.scheme));
  CHECK(manifest.find("\"model.visual.blocks.0.attn.qkv.quant_recipe\"") != std::string::npos);
  CHECK(manifest.find("\"model.visual.deepstack_merger_list.0.linear_fc2.quant_recipe\"") != std::string::npos);
  const std::string table = read_text(out / "per-layer-sensitivity.md");
  CHECK(table.find("|model.visual.patch_embed.proj|8.0, 8.0|") != std::string::npos);
  CHECK(fs::is_regular_file(out / "per-layer-sensitivity.json"));
  // The vision quantizers were calibrated: their input amax is in the state of the chosen recipes.
  const safetensors_file state(out / autoquant::state_filename(o.scheme_name));
  bool vision_input_amax = false;
  for (const tensor_view& t : state.tensors()) {
    vision_input_amax = vision_input_amax || t.name == "model.visual.blocks.1.mlp.linear_fc2.input_quantizer._amax";
  }
  CHECK(vision_input_amax);
  fs::remove_all(dir);
}

TEST_CASE("image-caption batches lose their droppable padding without changing a score") {
  const fs::path dir = fs::temp_directory_path() / "aq_test_autoquant_images_trim";
  write_image_pairs(dir, "A grid.", "A small photograph of a street.");
  const qwen3_vl::config cfg = autoquant::default_model_config();
  const autoquant::generated_model weights = autoquant::make_generated_model(cfg, 3);
  const qwen3_vl::vl_model model(cfg, weights.text, weights.vision);
  const io::tokenizer tok =
      io::tokenizer::from_file(fs::path(AQ_SOURCE_DIR) / "data" / "qwen3-tokenizer" / "tokenizer.json");
  // seq_len well above the prompts: each pair is left-padded by dozens of tokens.
  const std::vector<io::calib_batch> batches =
      autoquant::make_image_caption_batches(tok, dir / "pairs.jsonl", 2, /*seq_len=*/160, cfg);
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].seq_len == 160);
  CHECK(batches[0].attention_mask[40] == 0);
  // --image-max-pixels: the 256 x 256 grid at the 65,536-pixel floor is the same image (64 visual
  // tokens); a larger bundled photo shrinks to at most the cap.
  const auto capped = autoquant::make_image_caption_batches(tok, dir / "pairs.jsonl", 1, 160, cfg, 65536);
  CHECK(capped[0].vision.grid_thw == batches[0].vision.grid_thw);
  std::ofstream(dir / "photo.jsonl") << R"({"image": ")" << (fs::path(AQ_SOURCE_DIR) / "data" / "images" / "astronaut.png").generic_string()
                                     << R"(", "caption": "An astronaut."})" << "\n";
  const auto full = autoquant::make_image_caption_batches(tok, dir / "photo.jsonl", 1, 16, cfg);
  const auto small = autoquant::make_image_caption_batches(tok, dir / "photo.jsonl", 1, 16, cfg, 200704);
  const auto pixels = [&](const io::calib_batch& b) {
    const auto& g = b.vision.grid_thw.at(0);
    return g[1] * g[2] * cfg.vision.patch_size * cfg.vision.patch_size;
  };
  CHECK(pixels(small[0]) <= 200704);
  CHECK(pixels(small[0]) < pixels(full[0]));
  CHECK(small[0].seq_len < full[0].seq_len);

  const autoquant::search_space space = autoquant::make_search_space(
      qwen3_vl::quantizable_modules(cfg), std::vector<std::string>{"fp8_e4m3", "int8_w8a8"},
      autoquant::scope_patterns(autoquant::scope_preset::all));
  autoquant::engine_options o;
  o.effective_bits = 8.0;
  o.num_calib_steps = 2;
  o.num_score_steps = 2;
  o.scope = autoquant::scope_preset::all;
  const auto scores = [&](bool trim) {
    const autoquant::model_runner runner = autoquant::make_model_runner(model, batches, cpu::masked_row_policy::zero, trim);
    autoquant::cpu_scoring_backend backend(space, runner);
    return autoquant::run_autoquant(space, backend, o).raw_scores;
  };
  const auto whole = scores(false), trimmed = scores(true);
  REQUIRE(whole.size() == trimmed.size());
  double worst = 0.0;
  std::size_t compared = 0, loose = 0;
  for (std::size_t g = 0; g < whole.size(); ++g) {
    for (std::size_t c = 0; c < whole[g].size(); ++c) {
      if (whole[g][c] == 0.0) continue;
      const double rel = std::abs(trimmed[g][c] - whole[g][c]) / std::abs(whole[g][c]);
      loose += rel > 1e-5 ? 1 : 0;
      worst = std::max(worst, rel);
      ++compared;
    }
  }
  CHECK(compared > 2 * space.groups.size() / 2);
  // fp32: the same sums over fewer (all-zero) padding terms, in GEMM blocks of other sizes. An
  // input that moves by an ulp can cross an fp8 rounding boundary and move its score by one
  // quantization step (2.2e-4 in one score here); every other score agrees to 1e-5.
  CHECK(loose <= 2);
  CHECK(worst < 1e-3);
  fs::remove_all(dir);
}

}  // namespace test_autoquant_images
