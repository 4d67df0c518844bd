// aq-export: turns a chosen mix (a quant manifest or MAP.json, with the quantizer state of the run
// that calibrated it) into a checkpoint a serving stack loads: real quantized weights and scales
// in the ModelOpt or compressed-tensors layout, everything else copied byte for byte.
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include <aq/export/checkpoint_layout.hpp>
#include <aq/search/scope.hpp>

#include "cli/export_run.hpp"
#include "cli/options.hpp"

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: aq-export --model DIR --recipes MANIFEST|MAP.json --state STATE.safetensors\n"
               "                 --format modelopt|compressed-tensors --output-dir OUT [--module-root whole|inner]\n"
               "                 [--threads N]\n"
               "  Writes DIR's checkpoint with the mix applied as real quantized weights: fp8_e4m3,\n"
               "  int8_w8a8, w8a16, w4a16 and nvfp4 get codes and scales; every other\n"
               "  tensor (embeddings, norms, the vision tower, unquantized layers) is copied byte for\n"
               "  byte; shards mirror DIR's.\n"
               "  --recipes: a quant manifest (chosen_recipes) or a recipe map (docs/recipe-maps.md).\n"
               "  --state: the NAME_autoquant_state.safetensors of the run that calibrated the mix.\n"
               "  --format modelopt: ModelOpt 0.39 export_hf_checkpoint layout (hf_quant_config.json);\n"
               "  --format compressed-tensors: compressed-tensors 0.20 (vLLM, transformers).\n"
               "  --output-dir: created or replaced as a whole, published in one rename when complete.\n"
               "  --module-root whole|inner: how the recipe file and state name modules (default whole).\n"
               "  --threads N: threads converting weights, at most 1024 (default: all); each holds one\n"
               "  weight's fp32 copy and codes.\n"
               "  Recipes a layout cannot express (w4a8, w8a4, w4a4, mx*, fp8_pc_pt, fp8_2d_blockwise,\n"
               "  w4a8_nvfp4_fp8) are refused before anything is written. See docs/export.md.\n");
}

std::optional<aq::autoquant::export_options> parse_arguments(int argc, char** argv) {
  aq::autoquant::export_options o;
  bool format_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw aq::error(arg + ": missing value");
      return argv[++i];
    };
    if (arg == "--model") {
      o.model_dir = value();
    } else if (arg == "--recipes") {
      o.recipes = value();
    } else if (arg == "--state") {
      o.state = value();
    } else if (arg == "--format") {
      o.layout = aq::hf_export::parse_checkpoint_layout(value());
      format_given = true;
    } else if (arg == "--output-dir") {
      o.output_dir = value();
    } else if (arg == "--module-root") {
      o.root = aq::autoquant::parse_module_root(value());
    } else if (arg == "--threads") {
      o.threads = static_cast<unsigned>(aq::autoquant::detail::parse_int(arg, value(), 0, aq::autoquant::max_threads));
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return std::nullopt;
    } else {
      throw aq::error("unknown argument '" + arg + "' (see --help)");
    }
  }
  for (const auto& [flag, given] :
       {std::pair{"--model", !o.model_dir.empty()}, std::pair{"--recipes", !o.recipes.empty()},
        std::pair{"--state", !o.state.empty()}, std::pair{"--format", format_given},
        std::pair{"--output-dir", !o.output_dir.empty()}}) {
    if (!given) throw aq::error(std::string(flag) + " is required (see --help)");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<aq::autoquant::export_options> o;
  try {
    o = parse_arguments(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-export: %s\n", e.what());
    return 2;
  }
  if (!o) return 0;
  try {
    aq::autoquant::run_export(*o);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-export: %s\n", e.what());
    return 1;
  }
}
