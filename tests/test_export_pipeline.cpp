// aq-export on what aq-autoquant writes: a tiny AutoQuant run (generated Qwen3-VL weights written
// as a checkpoint, bundled captions through a toy encoder, fp8 / int8 / w4a16 candidates) writes
// its manifest and quantizer state, and both layouts export them: the manifest's recipes and the
// state's amax (module names, shapes, counts as the engine writes them) are what the export uses.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/model_runner.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/backend/cpu/score/cpu_backend.hpp"
#include "aq/engine/engine.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipes.hpp"
#include "aq/report/quant_manifest.hpp"

#include "cli/default_model.hpp"
#include "cli/export_run.hpp"
#include "cli/outputs.hpp"

namespace test_export_pipeline {

namespace {

using namespace aq;
namespace fs = std::filesystem;

// In dims of 128 and 256 throughout the decoder, so that w4a16 is a candidate for every group.
const char* config_text = R"({
  "architectures": ["Qwen3VLForConditionalGeneration"], "image_token_id": 157, "model_type": "qwen3_vl",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 150, "dtype": "bfloat16",
    "eos_token_id": 151, "head_dim": 32, "hidden_act": "silu", "hidden_size": 128, "initializer_range": 0.02,
    "intermediate_size": 256, "max_position_embeddings": 4096, "model_type": "qwen3_vl_text",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [8, 4, 4], "rope_type": "default"},
    "rope_theta": 5000000, "tie_word_embeddings": false, "use_cache": true, "vocab_size": 160
  },
  "tie_word_embeddings": false, "transformers_version": "4.57.0.dev0", "video_token_id": 158,
  "vision_config": {
    "deepstack_visual_indexes": [1], "depth": 2, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32,
    "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 48, "model_type": "qwen3_vl",
    "num_heads": 2, "num_position_embeddings": 16, "out_hidden_size": 128, "patch_size": 4,
    "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 156, "vision_start_token_id": 155
})";

}  // namespace

TEST_CASE("aq-export exports what an AutoQuant run chose and calibrated") {
  const fs::path root = fs::temp_directory_path() / ("aq_test_export_pipeline_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path model_dir = root / "model", run_dir = root / "run";
  fs::create_directories(model_dir);
  std::ofstream(model_dir / "config.json") << config_text;
  const qwen3_vl::config cfg = read_qwen3_vl_config(model_dir);

  // The checkpoint holds the generated weights the run's model uses (bf16, exact).
  const qwen3_vl::weight_source source = autoquant::generated_weight_source(5);
  safetensors_writer writer;
  for (const auto& spec : qwen3_vl::expected_parameters(cfg)) {
    const tensor values = source.load(spec.name, spec.shape);
    writer.add_rounded(spec.name, dtype_bf16, spec.shape, values.storage());
  }
  writer.write(model_dir / "model.safetensors");

  const autoquant::generated_model gm = autoquant::make_generated_model(cfg, 5);
  const qwen3_vl::vl_model model(cfg, gm.text, gm.vision);
  const std::vector<std::string> captions =
      io::read_caption_lines(std::string(AQ_SOURCE_DIR) + "/data/captions/coco2017_captions_small.txt", 16);
  const auto encode = [](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % 90));
    return ids;
  };
  io::padding_options padding;
  padding.max_length = 24;
  padding.pad_id = 100;
  const std::vector<io::calib_batch> batches = io::make_text_calib_batches(captions, encode, 8, padding);
  const autoquant::model_runner runner = autoquant::make_model_runner(model, batches);
  const std::vector<std::string> formats{"w4a16", "int8_w8a8", "fp8_e4m3"};
  autoquant::search_space space = autoquant::make_search_space(qwen3_vl::quantizable_modules(cfg), formats,
                                                               autoquant::scope_patterns(autoquant::scope_preset::lm));
  autoquant::engine_options e;
  e.effective_bits = 7.0;
  e.num_calib_steps = io::num_calib_steps(static_cast<std::int64_t>(batches.size()));
  e.num_score_steps = io::num_score_steps(static_cast<std::int64_t>(batches.size()), 8);
  e.scheme_name = "export_pipeline";
  e.model_id = "builtin:export";
  autoquant::cpu_scoring_backend backend(space, runner);
  const autoquant::autoquant_result result = autoquant::run_autoquant(space, backend, e);
  autoquant::write_outputs(run_dir, space, result);

  for (const hf_export::checkpoint_layout layout :
       {hf_export::checkpoint_layout::modelopt, hf_export::checkpoint_layout::compressed_tensors}) {
    CAPTURE(hf_export::layout_name(layout));
    autoquant::export_options o;
    o.model_dir = model_dir.string();
    o.recipes = (run_dir / "export_pipeline_quant_manifest.json").string();
    o.state = (run_dir / autoquant::state_filename("export_pipeline")).string();
    o.output_dir = (root / std::string(hf_export::layout_name(layout))).string();
    o.layout = layout;
    autoquant::run_export(o);
    const hf_export::export_plan plan = autoquant::plan_export(o, cfg);

    // Every group's chosen recipe is exported for each of its modules, the rest left alone.
    std::size_t quantized_modules = 0;
    for (std::size_t m = 0; m < space.modules.size(); ++m) {
      const std::string_view recipe = space.candidates[result.chosen[space.module_group[m]]].recipe->name;
      const hf_export::module_export* planned = plan.find(space.modules[m].name);
      CHECK((planned != nullptr) == (recipe != "none"));
      if (planned == nullptr) continue;
      CHECK(planned->recipe == recipe);
      ++quantized_modules;
    }
    CHECK(quantized_modules > 0);
    std::set<std::string> recipes_used;
    for (const hf_export::module_export& m : plan.quantized) recipes_used.insert(m.recipe);
    CHECK(recipes_used.size() >= 2);  // a mix, not one recipe
    CHECK(quantized_modules == plan.quantized.size());

    // The state's weight amax is the weights' own (the engine calibrates weights from themselves).
    const safetensors_checkpoint in(model_dir);
    for (const hf_export::module_export& m : plan.quantized) {
      if (m.scheme != hf_export::weight_scheme::int8_channel) continue;
      const std::vector<float> w = to_float_vector(in.at(hf_export::weight_tensor_name(m.name)));
      CHECK(m.weight_amax == quant::calibrate_amax<recipes::int8_w8a8::weight>(w, m.rows, m.cols));
    }
    const safetensors_checkpoint out(o.output_dir, hf_export::any_safetensors_dtype);
    CHECK(out.tensors().size() > in.tensors().size());
  }
  fs::remove_all(root);
}

}  // namespace test_export_pipeline
