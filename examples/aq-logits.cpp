// aq-logits: runs the CPU Qwen3-VL model on one sequence (token ids, or text through the model's
// tokenizer, optionally after images), forward and backward of the mean LM loss (labels = ids),
// and writes logits, loss and optionally every quantizable module's input, output and output
// gradient to a safetensors file (fp32) for comparison with a reference.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <aq/backend/cpu/qwen3_vl/text_model.hpp>
#include <aq/backend/cpu/qwen3_vl/vl_model.hpp>
#include <aq/backend/cpu/score/cpu_backend.hpp>
#include <aq/backend/cpu/score/quantized_mix_forward.hpp>
#include <aq/engine/evaluation.hpp>
#include <aq/io/checkpoint/safetensors.hpp>
#include <aq/io/checkpoint/safetensors_writer.hpp>
#include <aq/io/image/image.hpp>
#include <aq/io/image/image_preprocess.hpp>
#include <aq/io/tokenizer/tokenizer.hpp>
#include <aq/model/qwen3_vl/checkpoint_source.hpp>
#include <aq/model/qwen3_vl/config_json.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>
#include <aq/model/qwen3_vl/modules.hpp>
#include <aq/model/qwen3_vl/rope_index.hpp>
#include <aq/search/recipe_assignment.hpp>
#include <aq/search/search_space.hpp>

#include "cli/options.hpp"
#include "cli/output_set.hpp"
#include "cli/preflight.hpp"

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: aq-logits --model DIR (--ids \"1 2 3\" | --text T) [--image F]... --out F.safetensors\n"
               "                 [--dump-linears] [--sdpa] [--min-pixels N] [--max-pixels N]\n"
               "                 [--recipes FILE --state STATE [--module-root whole|inner]]\n"
               "  Forward + backward of the mean next-token loss (labels = ids) with the CPU fp32 model.\n"
               "  --text is encoded with DIR/tokenizer.json (no chat template, no special tokens added).\n"
               "  Each --image is preprocessed as the Qwen3-VL processor does. Where the ids (or text) hold\n"
               "  one <|image_pad|> run per image, e.g. a chat prompt's <|vision_start|><|image_pad|><|vision_end|>,\n"
               "  the images go there: a run of one pad is expanded to the image's token count, a run of exactly\n"
               "  that count is kept. Ids without a run get <|vision_start|> <|image_pad|> x N <|vision_end|>\n"
               "  per image in front. pixel_values, image_grid_thw and input_ids (as F32, exact) are written too.\n"
               "  Writes logits [T, vocab] and loss [1]; --dump-linears adds <module>.input/.output/.grad_output\n"
               "  as [tokens, features]. --sdpa: fully masked query rows give zeros (torch SDPA) instead of\n"
               "  attending uniformly (eager); irrelevant without padding.\n"
               "  --min-pixels/--max-pixels: the processor's resize bounds (positive integers).\n"
               "  --recipes FILE --state STATE: run with a mix applied (fake quant, as aq-autoquant scores\n"
               "  and evaluates it): FILE a quant manifest or MAP.json (docs/recipe-maps.md), STATE the\n"
               "  NAME_autoquant_state.safetensors of the run that calibrated it (its input amax; weights\n"
               "  are calibrated from themselves). --module-root whole|inner: how FILE names modules\n"
               "  (default whole). Not with --dump-linears.\n");
}

// Copies the (contiguous-row) views of every linear call into the writer.
struct dump_observer : aq::qwen3_vl::linear_observer {
  aq::safetensors_writer* writer;
  explicit dump_observer(aq::safetensors_writer* w) : writer(w) {}
  void put(std::string_view name, const char* suffix, const aq::const_matrix_view& m) {
    std::vector<float> values;
    values.reserve(static_cast<std::size_t>(m.rows * m.cols));
    for (std::int64_t r = 0; r < m.rows; ++r) values.insert(values.end(), m.row(r), m.row(r) + m.cols);
    writer->add(std::string(name) + suffix, {m.rows, m.cols}, std::span<const float>(values));
  }
  void on_forward(const aq::qwen3_vl::linear_call& c) override {
    put(c.name, ".input", c.input);
    put(c.name, ".output", c.output);
  }
  void on_backward(const aq::qwen3_vl::linear_call& c) override { put(c.name, ".grad_output", c.grad_output); }
};

// Token ids separated by white space, each in [0, vocab).
std::vector<std::int64_t> parse_ids(const std::string& text, std::int64_t vocab) {
  std::vector<std::int64_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) ids.push_back(aq::autoquant::detail::parse_int("--ids", word, 0, vocab - 1));
  if (ids.empty()) throw aq::error("--ids: no token ids given");
  return ids;
}

struct arguments {
  std::string model_dir, ids_text, text, out_path, recipes, state;
  aq::autoquant::module_root root = aq::autoquant::module_root::whole;
  std::optional<std::int64_t> min_pixels, max_pixels;
  std::vector<std::string> image_paths;
  bool dump = false;
  bool sdpa = false;
};

aq::error error_both() { return aq::error("--recipes and --state go together (the mix and its calibration)"); }

// The mix of `recipes` over the model's quantizable modules, calibrated with `state`'s input amax.
struct applied_mix {
  aq::autoquant::search_space space;
  aq::score::calibrated_recipes calibration;
  aq::score::module_mix mix;
};

std::unique_ptr<applied_mix> load_mix(const arguments& a, const aq::qwen3_vl::config& cfg) {
  const aq::autoquant::recipe_assignment given = aq::autoquant::read_recipe_assignment(a.recipes);
  const std::vector<std::string> formats = aq::autoquant::recipe_names(given);
  aq::autoquant::search_space space =
      aq::autoquant::make_search_space(aq::qwen3_vl::quantizable_modules(cfg), formats, {}, a.root);
  const std::vector<std::size_t> chosen = aq::autoquant::assign_groups(space, given);
  aq::score::calibrated_recipes calibration = aq::autoquant::make_calibrated_recipes(space);
  const aq::safetensors_file state(a.state, aq::readable_dtypes);
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const std::size_t c = chosen[space.module_group[m]];
    if (c == space.none_index() || !space.candidates[c].recipe->input.calibrated) continue;
    const std::string name = space.module_names[m] + ".input_quantizer._amax";
    const std::vector<float> amax = aq::to_float_vector(state.at(name));
    if (amax.size() != 1) throw aq::error(a.state + ": " + name + " holds " + std::to_string(amax.size()) + " values, expected 1");
    calibration.set_input_amax(m, amax[0]);
  }
  aq::score::module_mix mix = aq::autoquant::module_mix_of(space, chosen);
  return std::make_unique<applied_mix>(applied_mix{std::move(space), std::move(calibration), std::move(mix)});
}

// Exit code 2 with the usage for a malformed command line; aq::error for a bad value.
std::optional<arguments> parse_arguments(int argc, char** argv) {
  arguments a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw aq::error(arg + ": missing value");
      return argv[++i];
    };
    if (arg == "--model") {
      a.model_dir = value();
    } else if (arg == "--ids") {
      a.ids_text = value();
    } else if (arg == "--text") {
      a.text = value();
    } else if (arg == "--image") {
      a.image_paths.push_back(value());
    } else if (arg == "--min-pixels") {
      a.min_pixels = aq::autoquant::detail::parse_int(arg, value(), 1);
    } else if (arg == "--max-pixels") {
      a.max_pixels = aq::autoquant::detail::parse_int(arg, value(), 1);
    } else if (arg == "--out") {
      a.out_path = value();
    } else if (arg == "--dump-linears") {
      a.dump = true;
    } else if (arg == "--recipes") {
      a.recipes = value();
    } else if (arg == "--state") {
      a.state = value();
    } else if (arg == "--module-root") {
      a.root = aq::autoquant::parse_module_root(value());
    } else if (arg == "--sdpa") {
      a.sdpa = true;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return std::nullopt;
    } else {
      throw aq::error("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (a.model_dir.empty()) throw aq::error("--model is required (see --help)");
  if (a.out_path.empty()) throw aq::error("--out is required (see --help)");
  if (a.ids_text.empty() == a.text.empty()) throw aq::error("give exactly one of --ids and --text (see --help)");
  if (a.recipes.empty() != a.state.empty()) throw error_both();
  if (!a.recipes.empty() && a.dump) throw aq::error("--recipes: not with --dump-linears");
  if (a.min_pixels && a.max_pixels && *a.min_pixels > *a.max_pixels) {
    throw aq::error("--min-pixels " + std::to_string(*a.min_pixels) + " exceeds --max-pixels " +
                    std::to_string(*a.max_pixels));
  }
  return a;
}

int run(const arguments& a) {
  namespace fs = std::filesystem;
  // Paths first, before anything is loaded.
  const fs::path model_dir(a.model_dir);
  aq::autoquant::check_input_directory("--model", model_dir);
  aq::autoquant::check_input_file("--model", model_dir / "config.json");
  for (const std::string& path : a.image_paths) aq::autoquant::check_input_file("--image", path);
  if (!a.recipes.empty()) {
    aq::autoquant::check_input_file("--recipes", a.recipes);
    aq::autoquant::check_input_file("--state", a.state);
  }
  aq::check_output_file("--out", a.out_path);
  aq::detail::remove_stale_temporaries(a.out_path);  // "<out>.tmp.<pid>" of a killed run

  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model_dir);
  std::vector<std::int64_t> body;
  if (!a.text.empty()) {
    const aq::io::tokenizer tok = aq::io::tokenizer::from_file(model_dir);
    for (const std::uint32_t id : tok.encode(a.text)) body.push_back(id);
  } else {
    body = parse_ids(a.ids_text, cfg.text.vocab_size);
  }
  aq::qwen3_vl::image_batch images;
  aq::safetensors_writer writer;
  aq::qwen3_vl::text_batch batch;
  const aq::qwen3_vl::image_placeholder_ids placeholder{cfg.vision_start_token_id, cfg.image_token_id,
                                                        cfg.vision_end_token_id};
  if (!a.image_paths.empty()) {
    aq::io::qwen3_vl_image_options o;
    o.patch_size = static_cast<int>(cfg.vision.patch_size);
    o.temporal_patch_size = static_cast<int>(cfg.vision.temporal_patch_size);
    o.merge_size = static_cast<int>(cfg.vision.spatial_merge_size);
    if (a.min_pixels) o.min_pixels = *a.min_pixels;
    if (a.max_pixels) o.max_pixels = *a.max_pixels;
    std::vector<aq::io::image_rgb8> decoded;
    for (const std::string& path : a.image_paths) decoded.push_back(aq::io::load_image(path));
    const aq::io::vision_inputs vi = aq::io::preprocess_images(decoded, o);
    images.pixel_values = aq::tensor({vi.rows, vi.cols});
    images.pixel_values.storage() = vi.pixel_values;
    std::vector<float> grid_values;  // small integers, exact in F32
    for (const auto& g : vi.grid_thw) {
      images.grids.push_back(g);
      for (const std::int64_t v : g) grid_values.push_back(static_cast<float>(v));
    }
    batch.input_ids = aq::qwen3_vl::place_image_placeholders(body, images.grids, cfg.vision.spatial_merge_size, placeholder);
    writer.add("pixel_values", {vi.rows, vi.cols}, std::span<const float>(vi.pixel_values));
    writer.add("image_grid_thw", {static_cast<std::int64_t>(vi.grid_thw.size()), 3}, std::span<const float>(grid_values));
  } else {
    if (std::find(body.begin(), body.end(), cfg.image_token_id) != body.end()) {
      throw aq::error("the ids hold image placeholder id " + std::to_string(cfg.image_token_id) +
                      " but no --image is given");
    }
    batch.input_ids = body;
  }
  batch.batch = 1;
  batch.seq = static_cast<std::int64_t>(batch.input_ids.size());
  aq::autoquant::check_sequence_length("the sequence of " + std::to_string(batch.seq) + " tokens", batch.seq,
                                       cfg.text.max_position_embeddings, (model_dir / "config.json").string());
  batch.attention_mask.assign(batch.input_ids.size(), 1);
  batch.labels = batch.input_ids;

  // Text-only sequences never build the vision tower (nor read its weights).
  const aq::safetensors_checkpoint checkpoint(model_dir);
  aq::qwen3_vl::check_parameters(cfg, checkpoint);  // every tensor named and shaped as the config says
  const aq::qwen3_vl::weight_source source = aq::qwen3_vl::checkpoint_weight_source(checkpoint);
  const aq::qwen3_vl::text_weights weights = aq::qwen3_vl::load_text_weights(cfg, source);
  dump_observer dumper(&writer);
  const std::unique_ptr<applied_mix> applied = a.recipes.empty() ? nullptr : load_mix(a, cfg);
  std::optional<aq::score::quantized_mix_forward> quantized;
  if (applied) {
    quantized.emplace(applied->calibration);
    quantized->select(applied->mix);
  }
  aq::qwen3_vl::linear_observer* observer = applied ? static_cast<aq::qwen3_vl::linear_observer*>(&*quantized)
                                                    : (a.dump ? &dumper : nullptr);
  aq::qwen3_vl::run_options options;
  options.masked_rows = a.sdpa ? aq::cpu::masked_row_policy::zero : aq::cpu::masked_row_policy::attend_all;
  aq::qwen3_vl::text_result result;
  if (a.image_paths.empty()) {
    const aq::qwen3_vl::text_model model(cfg, weights);
    result = model.run(batch, options, observer);
  } else {
    const aq::qwen3_vl::vision_weights vision = aq::qwen3_vl::load_vision_weights(cfg, source);
    const aq::qwen3_vl::vl_model model(cfg, weights, vision);
    result = model.run(batch, &images, options, observer);
  }
  std::vector<float> id_values(batch.input_ids.begin(), batch.input_ids.end());  // ids < 2^24: exact in F32
  writer.add("input_ids", {batch.seq}, std::span<const float>(id_values));
  writer.add("logits", {batch.seq, cfg.text.vocab_size}, std::span<const float>(result.logits.storage()));
  const float loss = static_cast<float>(result.loss);
  writer.add("loss", {1}, std::span<const float>(&loss, 1));
  writer.write(a.out_path);
  std::printf("tokens %lld, targets %lld, loss %.9g -> %s\n", static_cast<long long>(batch.seq),
              static_cast<long long>(result.targets), result.loss, a.out_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<arguments> a;
  try {
    a = parse_arguments(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-logits: %s\n", e.what());
    return 2;
  }
  if (!a) return 0;
  try {
    return run(*a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-logits: %s\n", e.what());
    return 1;
  }
}
