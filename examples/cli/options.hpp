// Everything one aq-autoquant run is configured with: model, data, formats, budget, scope, method,
// sizes, outputs; the named presets that reproduce the reference runs; and the command-line
// parser and --help text (the recipe table comes from the registry).
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/image/image_preprocess.hpp"
#include "aq/quant/recipe_registry.hpp"
#include "aq/score/monotone_clamp.hpp"
#include "aq/search/scope.hpp"

namespace aq::autoquant {

// The reference's calibration sizes (conf/dataset/vlm_coco2017_captions.yaml size_to_max_samples).
inline std::int64_t dataset_size_samples(std::string_view size) {
  if (size == "small") return 16;
  if (size == "medium") return 128;
  if (size == "large") return 512;
  throw error("--dataset-size: '" + std::string(size) + "' is unknown; valid sizes: small (16), medium (128), large (512)");
}

// The bundled captions file of a reference size (data-relative, for find_bundled): the reference
// runs read the first N of one seed-42 sample, bundled per size; medium when no size is given.
inline std::string bundled_captions(const std::optional<std::string>& size) {
  return "captions/coco2017_captions_" + size.value_or("medium") + ".txt";
}

// How --device cuda runs (flags refused with --device cpu).
struct gpu_options {
  // cudnn: cuDNN's fused SDPA where it takes the batch, else tc; tc: aq's bf16 tensor-core
  // attention kernels; fp32: fp32 storage, CUDA cores
  std::string attention = "cudnn";
  std::string activations = "auto";  // auto | saved | recompute
  std::string recipe_gemm = "codes";  // codes: fp8/int8 recipe products on their codes; bf16: on bf16 operands
  double weight_cache_gib = -1.0;    // < 0: whatever fits with a margin
  // --memory-budget-gib: half of ModelOpt's estimated peak for the run (auto, the default), what
  // fits on the card (max), or a size in GiB.
  enum class budget { half_modelopt, whole_device, gib };
  budget memory_budget = budget::half_modelopt;
  double memory_budget_gib = 0.0;    // with budget::gib
  std::int64_t micro_batch = 0;      // sequences per device pass; 0: whole batches (or what the budget allows)
  bool profile_kernels = false;
  std::optional<std::string> first_flag;  // the first GPU flag given (named when --device cpu refuses it)
};

struct driver_options {
  std::optional<std::string> model_dir;  // empty: the built-in default model
  std::optional<std::string> calib;      // captions .txt or image-caption .jsonl
  std::vector<std::string> formats{"fp8_e4m3", "int8_w8a8", "w4a8"};
  bool formats_given = false;  // --formats on the command line or by a preset
  double effective_bits = default_effective_bits;
  scope_preset scope = scope_preset::lm;
  std::optional<module_root> root;          // default: whole with --model, inner for the built-in model
  std::vector<std::string> disable;
  score_method method = score_method::gradient;
  std::optional<std::int64_t> num_samples;  // default: 128 (16 for the built-in model)
  std::optional<std::int64_t> seq_len;      // default: 512 (32 for the built-in model)
  std::int64_t batch_size = 8;
  std::int64_t image_max_pixels = io::qwen3_vl_image_options{}.max_pixels;  // the processor's max_pixels
  std::optional<std::string> dataset_size;  // small / medium / large
  std::optional<std::int64_t> num_calib_steps;  // default: every batch
  std::optional<std::int64_t> num_score_steps;  // default: min(max(score_size / batch, 1), batches)
  std::int64_t score_size = 128;
  std::optional<std::string> scheme_name;
  std::optional<std::string> output_dir;
  std::uint64_t seed = 0;                   // the built-in model's weights
  score::clamp_rule clamp = score::clamp_rule::modelopt_0_39;
  bool adjust_budget = true;
  bool custom_names = false;
  std::string attention = "sdpa";
  bool keep_padding = false;                // run every padding column (qwen3_vl::trim_padding off)
  unsigned threads = 0;                     // 0: all hardware threads; at most max_threads
  std::optional<std::string> dump_batches;
  std::optional<std::string> result_json;
  std::optional<std::string> preset;
  // Report metadata set by presets (the reference runs' scheme fields).
  std::optional<std::string> coverage_mode;
  std::vector<std::string> quant_formats;
  std::optional<std::string> dataset_name;
  // Where calibration and scoring run: "cpu" or "cuda"; empty: the program's default (cuda when
  // the build has CUDA and a GPU is present, else cpu; aq-autoquant-cuda: cuda).
  std::optional<std::string> device;
  gpu_options gpu;
  // Closed-loop evaluation on held-out data (--evaluate; aq-eval and --recipes imply it).
  bool evaluate = false;
  std::optional<std::string> eval_data;      // default: the calibration source after its calibration samples
  std::optional<std::int64_t> eval_samples;  // default: 128 (16 for the built-in model)
  std::int64_t eval_points = 5;              // Pareto points measured
  std::optional<std::string> recipes;        // a mix chosen earlier or by hand: manifest or MAP.json
  // After the reports: the chosen mix as a quantized checkpoint (aq-export's work, docs/export.md).
  std::optional<std::string> export_dir;
  std::string export_format = "modelopt";    // modelopt | compressed-tensors
  bool help = false;
};

// --threads above this is refused (a pool of 100000 threads fails to start, and no machine needs more).
inline constexpr std::int64_t max_threads = 1024;

// A named run of the reference project: its formats, budget, coverage and data shape, and the
// module ModelOpt was given (which fixes the group count and names of its reports).
struct preset {
  std::string_view name;
  std::string_view scheme;
  std::string_view formats;
  double bits;
  scope_preset scope;
  module_root root;
  bool adjust_budget;
  bool custom_names;
  std::string_view coverage_mode;
  std::string_view quant_format;
  std::string_view data;  // "captions" (text only, batch 8) or "images" (image+caption JSON lines, batch 1)
  std::string_view size;
  std::string_view reference;  // its ModelOpt reports under data/reference/ (empty: none bundled)
  std::string_view note;
};

// clang-format off
inline constexpr preset presets[] = {
  {"int8_autoquant_lm_default", "int8_autoquant_lm_default", "int8_w8a8", 8.0, scope_preset::all, module_root::inner,
   false, false, "lm_default", "INT8_LM_DEFAULT_CFG", "captions", "medium", "lm-only/int8_lm_default_medium",
   "INT8 W8A8, 8.0 bits, the inner model (249 groups, no lm_head), text-only captions: the vision tower never runs "
   "(score 0, kept INT8 as in the reference)"},
  {"wint8_aint4_autoquant_lm", "wint8_aint4_autoquant_lm", "w8a4", 8.0, scope_preset::lm, module_root::whole, true,
   false, "lm_only", "INT8_WEIGHT_INT4_ACT_CFG", "captions", "medium", "lm-only/wint8_aint4",
   "INT8 weights + INT4 activations (4.0 effective bits) vs NONE, LM only, B' of the reference"},
  {"wint8_aint8_autoquant_lm", "wint8_aint8_autoquant_lm", "int8_w8a8", 8.0, scope_preset::lm, module_root::whole, true,
   false, "lm_only", "INT8_DEFAULT_CFG", "captions", "medium", "lm-only/wint8_aint8",
   "INT8 W8A8 vs NONE, LM only, B' of the reference"},
  {"wfp8_afp8_autoquant_lm", "wfp8_afp8_autoquant_lm", "fp8_e4m3", 8.0, scope_preset::lm, module_root::whole, true,
   false, "lm_only", "FP8_DEFAULT_CFG", "captions", "medium", "lm-only/wfp8_afp8",
   "FP8 W8A8 vs NONE, LM only, B' of the reference"},
  {"fp8_autoquant_all_layers", "fp8_autoquant_all_layers_fp8", "fp8_e4m3", 11.0, scope_preset::all, module_root::whole,
   false, true, "full", "FP8_ALL_LAYERS_CFG", "images", "large", "",
   "FP8 everywhere (shown as CUSTOM_0), 11.0 bits, image+caption samples, batch 1"},
  {"int8_autoquant_all_layers", "int8_autoquant_all_layers_int8", "int8_w8a8", 8.0, scope_preset::all,
   module_root::whole, false, true, "full", "INT8_ALL_LAYERS_CFG", "images", "medium", "all-layers/int8_medium",
   "INT8 W8A8 everywhere (shown as CUSTOM_0), 8.0 bits, image+caption samples, batch 1"},
};
// clang-format on

inline const preset& find_preset(std::string_view name) {
  for (const preset& p : presets) {
    if (p.name == name) return p;
  }
  std::string names;
  for (const preset& p : presets) names += (names.empty() ? "" : ", ") + std::string(p.name);
  throw error("--preset: '" + std::string(name) + "' is unknown; valid presets: " + names);
}

inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return items;
}

namespace detail {

// A finite decimal number, the whole text; overflow (1e999) and nan/inf are refused.
inline double parse_double(std::string_view flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])) || end != text.c_str() + text.size() ||
      std::isnan(value)) {
    throw error(std::string(flag) + ": '" + text + "' is not a number");
  }
  if (std::isinf(value) || (errno == ERANGE && (value >= 1.0 || value <= -1.0))) {
    throw error(std::string(flag) + ": '" + text + "' is out of range (not a finite double)");
  }
  return value;
}

// A decimal integer, the whole text, within [min, max]; values beyond 64 bits are refused, never
// wrapped or clamped.
inline std::int64_t parse_int(std::string_view flag, const std::string& text, std::int64_t min,
                              std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])) || end != text.c_str() + text.size()) {
    throw error(std::string(flag) + ": '" + text + "' is not an integer");
  }
  if (errno == ERANGE || value < min || value > max) {
    std::string range = ">= " + std::to_string(min);
    if (max != std::numeric_limits<std::int64_t>::max()) range = "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    throw error(std::string(flag) + ": " + text + " is out of range (must be " + range + ")");
  }
  return value;
}

// A size in GiB: a number, then the range.
inline double parse_gib(std::string_view flag, const std::string& text) {
  const double v = parse_double(flag, text);
  if (!(v >= 0.0) || v > 1e6) throw error(std::string(flag) + ": expected a size in GiB >= 0, got '" + text + "'");
  return v;
}

// The --device cuda flags; false when `flag` is none of them. `value` takes the flag's value.
template <class Value>
bool parse_gpu_flag(gpu_options& g, const std::string& flag, Value&& value) {
  if (flag == "--gpu-attention") {
    g.attention = value();
    if (g.attention != "cudnn" && g.attention != "tc" && g.attention != "fp32") {
      throw error("--gpu-attention: expected cudnn, tc or fp32, got " + g.attention);
    }
  } else if (flag == "--activations") {
    g.activations = value();
    if (g.activations != "auto" && g.activations != "saved" && g.activations != "recompute") {
      throw error("--activations: expected auto, saved or recompute, got " + g.activations);
    }
  } else if (flag == "--recipe-gemm") {
    g.recipe_gemm = value();
    if (g.recipe_gemm != "codes" && g.recipe_gemm != "bf16") throw error("--recipe-gemm: expected codes or bf16, got " + g.recipe_gemm);
  } else if (flag == "--profile-kernels") {
    g.profile_kernels = true;
  } else if (flag == "--weight-cache-gib") {
    g.weight_cache_gib = parse_gib(flag, value());
  } else if (flag == "--memory-budget-gib") {
    const std::string v = value();
    if (v == "auto" || v == "max") {
      g.memory_budget = v == "auto" ? gpu_options::budget::half_modelopt : gpu_options::budget::whole_device;
    } else {
      try {
        g.memory_budget_gib = parse_gib(flag, v);
      } catch (const error&) {  // the same refusal, naming every value the flag takes
        throw error(flag + ": expected auto, max or a size in GiB >= 0, got '" + v + "'");
      }
      g.memory_budget = gpu_options::budget::gib;
    }
  } else if (flag == "--micro-batch") {
    g.micro_batch = parse_int(flag, value(), 1);
  } else {
    return false;
  }
  return true;
}

}  // namespace detail

// Applies a preset's fields; flags given on the command line are applied after it and win.
inline void apply_preset(driver_options& o, const preset& p) {
  o.preset = std::string(p.name);
  o.scheme_name = std::string(p.scheme);
  o.formats = split_list(p.formats);
  o.formats_given = true;
  o.effective_bits = p.bits;
  o.scope = p.scope;
  o.root = p.root;
  o.adjust_budget = p.adjust_budget;
  o.custom_names = p.custom_names;
  o.coverage_mode = std::string(p.coverage_mode);
  o.quant_formats = {std::string(p.quant_format)};
  o.dataset_size = std::string(p.size);
  o.dataset_name = p.data == "captions" ? "vlm_coco2017_captions" : "vlm_coco2017_image_captions";
  if (p.data == "images") o.batch_size = 1;
}

// The module the search is given: --module-root or the preset's; by default the whole checkpoint
// model, and the inner model for the built-in one (whose tied lm_head holds most of its weights
// and would otherwise dominate the effective bits).
inline module_root effective_module_root(const driver_options& o) {
  if (o.root) return *o.root;
  return o.model_dir ? module_root::whole : module_root::inner;
}

// Parses argv[1..]; throws aq::error naming the flag for anything malformed or unknown.
inline driver_options parse_arguments(std::span<const std::string> args) {
  driver_options o;
  // A preset first, so that explicit flags override it wherever they appear.
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--preset") apply_preset(o, find_preset(args[i + 1]));
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    const auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw error(flag + ": missing value");
      return args[++i];
    };
    if (flag == "--help" || flag == "-h") {
      o.help = true;
    } else if (flag == "--preset") {
      (void)value();
    } else if (flag == "--model") {
      o.model_dir = value();
    } else if (flag == "--calib") {
      o.calib = value();
    } else if (flag == "--formats") {
      o.formats = split_list(value());
      o.formats_given = true;
      if (o.formats.empty()) throw error("--formats: empty list");
    } else if (flag == "--effective-bits") {
      o.effective_bits = detail::parse_double(flag, value());
      if (!(o.effective_bits > 0.0 && o.effective_bits <= 16.0)) throw error("--effective-bits: must be in (0, 16]");
    } else if (flag == "--scope") {
      o.scope = parse_scope(value());
    } else if (flag == "--module-root") {
      o.root = parse_module_root(value());
    } else if (flag == "--disable") {
      o.disable.push_back(value());
    } else if (flag == "--method") {
      o.method = parse_score_method(value());
    } else if (flag == "--num-samples") {
      o.num_samples = detail::parse_int(flag, value(), 1);
    } else if (flag == "--dataset-size") {
      o.dataset_size = value();
      (void)dataset_size_samples(*o.dataset_size);
    } else if (flag == "--seq-len") {
      o.seq_len = detail::parse_int(flag, value(), 2);
    } else if (flag == "--batch-size") {
      o.batch_size = detail::parse_int(flag, value(), 1);
    } else if (flag == "--image-max-pixels") {
      o.image_max_pixels = detail::parse_int(flag, value(), io::qwen3_vl_image_options{}.min_pixels);
    } else if (flag == "--num-calib-steps") {
      o.num_calib_steps = detail::parse_int(flag, value(), 1);
    } else if (flag == "--num-score-steps") {
      o.num_score_steps = detail::parse_int(flag, value(), 1);
    } else if (flag == "--score-size") {
      o.score_size = detail::parse_int(flag, value(), 1);
    } else if (flag == "--scheme-name") {
      o.scheme_name = value();
      if (o.scheme_name->empty() || o.scheme_name->find('/') != std::string::npos) {
        throw error("--scheme-name: must be a non-empty file-name part without '/'");
      }
    } else if (flag == "--output-dir") {
      o.output_dir = value();
    } else if (flag == "--seed") {
      o.seed = static_cast<std::uint64_t>(detail::parse_int(flag, value(), 0));
    } else if (flag == "--clamp") {
      const std::string& rule = value();
      if (rule == "0.39") o.clamp = score::clamp_rule::modelopt_0_39;
      else if (rule == "0.40") o.clamp = score::clamp_rule::modelopt_0_40;
      else throw error("--clamp: '" + rule + "' is unknown; valid: 0.39, 0.40");
    } else if (flag == "--no-budget-adjust") {
      o.adjust_budget = false;
    } else if (flag == "--custom-names") {
      o.custom_names = true;
    } else if (flag == "--attention") {
      o.attention = value();
      if (o.attention != "sdpa" && o.attention != "eager") throw error("--attention: valid values are sdpa, eager");
    } else if (flag == "--keep-padding") {
      o.keep_padding = true;
    } else if (flag == "--threads") {
      o.threads = static_cast<unsigned>(detail::parse_int(flag, value(), 0, max_threads));
    } else if (flag == "--dump-batches") {
      o.dump_batches = value();
    } else if (flag == "--result-json") {
      o.result_json = value();
    } else if (flag == "--evaluate") {
      o.evaluate = true;
    } else if (flag == "--eval-data") {
      o.eval_data = value();
    } else if (flag == "--eval-samples") {
      o.eval_samples = detail::parse_int(flag, value(), 1);
    } else if (flag == "--eval-points") {
      o.eval_points = detail::parse_int(flag, value(), 0, 64);
    } else if (flag == "--recipes") {
      o.recipes = value();
    } else if (flag == "--export-dir") {
      o.export_dir = value();
    } else if (flag == "--export-format") {
      o.export_format = value();
      if (o.export_format != "modelopt" && o.export_format != "compressed-tensors") {
        throw error("--export-format: expected modelopt or compressed-tensors, got '" + o.export_format + "'");
      }
    } else if (flag == "--device") {
      o.device = value();
      if (*o.device != "cpu" && *o.device != "cuda") throw error("--device: expected cpu or cuda, got '" + *o.device + "'");
    } else if (detail::parse_gpu_flag(o.gpu, flag, value)) {
      if (!o.gpu.first_flag) o.gpu.first_flag = flag;
    } else {
      throw error("unknown argument '" + flag + "' (see --help)");
    }
  }
  return o;
}

inline std::string help_text() {
  std::string text = R"(usage: aq-autoquant [--model DIR] [--calib FILE] [--formats LIST] [--effective-bits B]
                    [--scope lm|all] [--method gradient|kl_div] [--output-dir OUT] [options]

Per-layer quantization sensitivity and mixed-format allocation of a Qwen3-VL model, as NVIDIA
ModelOpt's auto_quantize computes them: calibrate every candidate recipe (max), score every group
of layers, pick one recipe per group with the least summed score under an effective-bits budget.
Without --model it runs on the built-in default: a small Qwen3-VL generated in code (--seed) with
the bundled COCO captions and the Qwen3 tokenizer under data/, searched as the inner model (no
lm_head: its tied lm_head would hold 97% of the weights).

model and data
  --model DIR             Hugging Face Qwen3-VL checkpoint dir (config.json, *.safetensors,
                          tokenizer.json); default: the built-in model
  --calib FILE            captions .txt (one per line; left-padded to --seq-len, batches of
                          --batch-size) or image-caption .jsonl ({"image": path, "caption": text};
                          chat prompt with the image, batch 1); default: the bundled COCO
                          captions of --dataset-size (medium); bundled data is looked up next to
                          the program (<prefix>/share/aq/data) or in $AQ_DATA_DIR
  --num-samples N         first N samples (default 128; built-in model 16)
  --dataset-size S        small | medium | large = 16 | 128 | 512 samples (reference sizes)
  --seq-len T             padded length (default 512; built-in model 32)
  --batch-size B          rows per batch (default 8; image-caption data always 1)
  --image-max-pixels N    images larger than N pixels are resized down to at most N, aspect kept
                          (the processor's max_pixels; default 16777216, at least 65536)
  --seed N                weights of the built-in model (default 0)
  --attention sdpa|eager  fully masked (left-pad) query rows: zeros (torch SDPA, default) or uniform
  --keep-padding          run every padding column; by default calibration and gradient scoring drop
                          the leading padding that cannot change a score (sdpa only, docs/autoquant.md)

search
  --formats LIST          comma-separated recipes (table below); NONE is always a candidate
                          (default fp8_e4m3,int8_w8a8,w4a8)
  --effective-bits B      budget in effective bits (default 6.0)
  --scope lm|all          lm: text decoder + lm_head (vision tower and mergers unquantized);
                          all: every Linear and the patch Conv3d (default lm)
  --module-root R         the module searched, as handed to ModelOpt: whole (the checkpoint's
                          model: model.* names and lm_head) or inner (its `model`: names without
                          `model.`, no lm_head); default whole with --model, inner for the built-in
                          model (its tied lm_head is 97% of its weights)
  --disable PATTERN       fnmatch pattern on module names; a group with a matching member stays
                          unquantized (repeatable)
  --no-budget-adjust      with disabled groups, search the whole model at B instead of the
                          reference's B' = min(16, (16 D + B (T - D)) / T + 1e-3)
  --method M              gradient (ModelOpt's Fisher score, default) or kl_div (cross-entropy of
                          the quantized next-token distribution, ModelOpt 0.40)
  --num-calib-steps N     calibration batches (default: all)
  --num-score-steps N     scoring batches (default: min(max(score_size / batch, 1), batches))
  --score-size N          samples to score (default 128, as the reference)
  --clamp 0.39|0.40       ModelOpt version of the monotone score clamp (default 0.39)
  --custom-names          show every recipe as CUSTOM_<i> in reports (reference custom configs)
  --preset NAME           a reference run (flags after it override); see below

device
  --device cpu|cuda       where calibration and scoring run: cpu (fp32 reference) or cuda (bf16
                          weights and GEMMs, fp32 accumulation); default cuda when this build has
                          CUDA and a GPU is present, else cpu (aq-autoquant-cuda: cuda)
  --gpu-attention cudnn|tc|fp32
                          bf16 attention on cuDNN's fused SDPA where it takes the batch (cudnn,
                          default: batches of equal segments of >= 256 rows without padding, when
                          cuDNN 9 is installed), else aq's tensor-core kernels (tc), or fp32 storage
                          on CUDA cores, in the decoder and the vision tower
  --activations auto|saved|recompute
                          keep every layer's activations for the backward or recompute them per
                          layer (auto: as many layers as the memory budget holds; under
                          --memory-budget-gib max, all when they fit with 8 GiB to spare)
  --recipe-gemm codes|bf16
                          fp8_e4m3 / int8_w8a8 recipe products on their codes with the e4m3 / int8
                          tensor cores (default: exact products, scales applied after, 1 byte a
                          cached weight; bf16 operands where cuBLASLt refuses a shape), or on
                          fake-quantized operands rounded to bf16 (as ModelOpt computes them)
  --weight-cache-gib X    memory for quantized weights kept across batches (default: what the
                          budget leaves; with --memory-budget-gib max, free - 4 GiB)
  --memory-budget-gib auto|max|X
                          hold at most X GiB on the GPU: saves as many layers' activations as fit,
                          then caches quantized weights in the rest; runs the largest device pass
                          whose minimum fits (error if the smallest does not). auto
                          (default): half of ModelOpt's estimated peak for the same run, or no
                          budget where the run cannot fit in that; max: what fits on the card
                          (the fastest plan)
  --micro-batch N         device passes of at most N sequences, or of N x --seq-len tokens of packed
                          trimmed sequences (same scores, less memory)
  --profile-kernels       GPU time per kernel class (CUDA events; adds a little overhead)
                          (the flags after --device are for cuda; --device cpu refuses them)

evaluation
  --evaluate              after the search, measure on held-out data the unquantized model, every
                          candidate recipe applied uniformly, the chosen mix and --eval-points
                          points of the Pareto front: mean per-token KL(unquantized || mix),
                          perplexity, top-1 agreement; writes evaluation.json, evaluation.md,
                          report.html and SVG plots into the output dir (docs/evaluation.md)
  --eval-data FILE        captions .txt or image-caption .jsonl; default: the calibration source
                          after its calibration samples (the bundled captions: the full COCO set).
                          Samples equal to a calibration sample are always skipped
  --eval-samples N        held-out samples (default 128; built-in model 16)
  --eval-points N         Pareto points measured, evenly spaced in bits (default 5, at most 64)
  --recipes FILE          evaluate (and report) this mix instead of searching one: a quant manifest
                          (its chosen_recipes) or a MAP.json of module patterns -> recipes
                          (docs/recipe-maps.md); --formats defaults to the recipes it names.
                          Implies --evaluate; aq-eval is aq-autoquant with this flag required

export
  --export-dir DIR        after the reports, write the chosen mix as a quantized checkpoint of --model
                          (what aq-export writes from the manifest and state; docs/export.md). Every
                          candidate recipe must be exportable in the layout, checked before any work
  --export-format F       modelopt (default: ModelOpt's export_hf_checkpoint layout) or
                          compressed-tensors (transformers + compressed-tensors, vLLM)

output
  --output-dir OUT        writes NAME_quant_manifest.json, per-layer-sensitivity.{md,json},
                          NAME_autoquant_state.safetensors, NAME_autoquant.log (required)
  --scheme-name NAME      default: autoquant_<scope> (or the preset's scheme)
  --dump-batches F        the calibration batches as safetensors (input_ids, attention_mask,
                          labels: int64 [N, T]; image-caption data: per batch "<i>.<name>",
                          pixel_values and image_grid_thw too) for running ModelOpt on the same data
  --result-json F         machine-readable summary, schema aq.autoquant.compare/v1
  --threads N             CPU threads (CPU backend, --export-dir), at most 1024 (default: all)
  -h, --help              this text

recipes (--formats names; effective bits as ModelOpt prices them)
)";
  text += quant::recipe_table();
  text += "\npresets\n";
  for (const preset& p : presets) {
    text += "  " + std::string(p.name) + ": --formats " + std::string(p.formats) + " --effective-bits " +
            quant::python_float_repr(p.bits) + " --scope " + std::string(to_string(p.scope)) +
            (p.root == module_root::inner ? " --module-root inner" : "") + ", " +
            std::string(p.size) + " data; " + std::string(p.note) + "\n";
  }
  return text;
}

}  // namespace aq::autoquant
