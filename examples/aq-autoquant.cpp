// aq-autoquant: the reference driver. Model dir (or the built-in default) + calibration data +
// formats + budget -> ModelOpt-compatible manifest and per-layer sensitivity reports, the
// quantizer state of the chosen recipes and a run log. Calibration and scoring run on the CPU or,
// in a build with CUDA, on the GPU (--device; cuda/autoquant_gpu.cu); everything else is shared.
// Run as aq-autoquant-cuda it defaults to the GPU. `--help` lists every flag and recipe.
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <aq/backend/cpu/qwen3_vl/model_runner.hpp>
#include <aq/backend/cpu/qwen3_vl/vl_model.hpp>
#include <aq/backend/cpu/score/cpu_backend.hpp>
#include <aq/core/progress.hpp>
#include <aq/core/thread_pool.hpp>
#include <aq/engine/engine.hpp>
#include <aq/io/checkpoint/safetensors.hpp>
#include <aq/io/data/calib_batches.hpp>
#include <aq/io/data/calib_dataset.hpp>
#include <aq/io/image/image.hpp>
#include <aq/io/tokenizer/tokenizer.hpp>
#include <aq/model/qwen3_vl/checkpoint_source.hpp>
#include <aq/model/qwen3_vl/config_json.hpp>
#include <aq/model/qwen3_vl/modules.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>
#include <aq/report/evaluation_files.hpp>
#include <aq/search/recipe_assignment.hpp>
#include <aq/search/search_space.hpp>

#include "cli/bundled_data.hpp"
#include "cli/calib_inputs.hpp"
#include "cli/default_model.hpp"
#include "cli/export_run.hpp"
#include "cli/held_out_inputs.hpp"
#include "cli/options.hpp"
#include "cli/output_set.hpp"
#include "cli/outputs.hpp"
#include "cli/preflight.hpp"
#include "cli/result_json.hpp"

#ifdef AQ_AUTOQUANT_GPU  // this build has the GPU half (cuda/autoquant_gpu.cu)
#include <aq/backend/cuda/model/qwen3_vl_text_checkpoint.hpp>
#include <aq/backend/cuda/model/qwen3_vl_vision_checkpoint.hpp>

#include "cuda/autoquant_gpu.hpp"
#endif

namespace {

namespace fs = std::filesystem;
using namespace aq;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// Bundled data: data/ in the source tree or <prefix>/share/aq/data (cli/bundled_data.hpp).
fs::path bundled(const std::string& relative) {
  return autoquant::find_bundled(relative, {AQ_INSTALL_DATA_DIR, AQ_SOURCE_DATA_DIR});
}

// The name errors start with: aq-autoquant, or aq-autoquant-cuda / aq-eval when run under that
// name (the same program, GPU by default / evaluating a given mix).
std::string program_name(const char* argv0) {
  const std::string name = fs::path(argv0).filename().string();
  return name == "aq-autoquant-cuda" || name == "aq-eval" ? name : "aq-autoquant";
}

// --device, else the program's default: cuda for aq-autoquant-cuda; cuda when this build has
// CUDA and a GPU is present, else cpu.
std::string effective_device(const autoquant::driver_options& o, const std::string& program) {
  if (o.device) return *o.device;
  if (program == "aq-autoquant-cuda") return "cuda";
#ifdef AQ_AUTOQUANT_GPU
  if (autoquant_gpu::device_present()) return "cuda";
#endif
  return "cpu";
}

// What the device allows before any data is read: cuda needs a CUDA build; cpu takes no GPU flag.
void check_device(const autoquant::driver_options& o, const std::string& device) {
  if (device == "cuda") {
#ifndef AQ_AUTOQUANT_GPU
    throw error("--device cuda: this build has no CUDA (configure with -DAQ_WITH_CUDA=ON)");
#endif
    return;
  }
  if (o.gpu.first_flag) throw error(*o.gpu.first_flag + ": only with --device cuda (this run uses the CPU)");
}

// The model's config and, for the CPU, its host weights.
struct loaded_model {
  qwen3_vl::config cfg;
  qwen3_vl::text_weights text;
  qwen3_vl::vision_weights vision;
  std::string id;
  std::int64_t weight_bytes = 0;
};

std::string model_id(const autoquant::driver_options& o) {
  return o.model_dir ? fs::path(*o.model_dir).string() : "builtin:qwen3-vl-default(seed=" + std::to_string(o.seed) + ")";
}

// The model dir and its config were checked by autoquant::preflight before this runs.
loaded_model load_cpu_model(const autoquant::driver_options& o) {
  loaded_model m;
  if (o.model_dir) {
    const fs::path dir(*o.model_dir);
    m.cfg = read_qwen3_vl_config(dir);
    const safetensors_checkpoint checkpoint(dir);
    qwen3_vl::check_parameters(m.cfg, checkpoint);  // every tensor named and shaped as the config says
    const qwen3_vl::weight_source source = qwen3_vl::checkpoint_weight_source(checkpoint);
    m.text = qwen3_vl::load_text_weights(m.cfg, source);
    m.vision = qwen3_vl::load_vision_weights(m.cfg, source);
  } else {
    m.cfg = autoquant::default_model_config();
    autoquant::generated_model g = autoquant::make_generated_model(m.cfg, o.seed);
    m.text = std::move(g.text);
    m.vision = std::move(g.vision);
  }
  m.id = model_id(o);
  for (const quantizable_module& q : qwen3_vl::quantizable_modules(m.cfg)) m.weight_bytes += q.numel() * 4;
  return m;
}

#ifdef AQ_AUTOQUANT_GPU
// cuDNN opened while the weights load, with the decoder's attention planned for whole batches
// of text that fills --seq-len (image data: opened only; its passes' shapes vary).
void open_attention_library(const autoquant::driver_options& o, bool images, std::int64_t seq_len,
                            const qwen3_vl::config& cfg, autoquant_gpu::session& gpu) {
  if (o.gpu.attention == "cudnn") gpu.open_attention_library(cfg, images ? 0 : o.batch_size, seq_len);
}

// The model's weights straight onto the GPU (the vision tower's for image data only): a
// checkpoint's bf16 tensors as stored, or the built-in model's generated ones.
loaded_model load_gpu_model(const autoquant::driver_options& o, bool images, std::int64_t seq_len,
                            autoquant_gpu::session& gpu) {
  loaded_model m;
  if (o.model_dir) {
    const fs::path dir(*o.model_dir);
    m.cfg = read_qwen3_vl_config(dir);
    open_attention_library(o, images, seq_len, m.cfg, gpu);
    const safetensors_checkpoint checkpoint(dir);
    qwen3_vl::check_parameters(m.cfg, checkpoint);  // every tensor named and shaped as the config says
    cuda::qwen3_vl_text_device_weights text = cuda::load_text_weights(m.cfg, checkpoint);
    cuda::qwen3_vl_vision_device_weights vision;
    if (images) vision = cuda::load_vision_weights(m.cfg, checkpoint);
    gpu.adopt(std::move(text), std::move(vision));
  } else {
    m.cfg = autoquant::default_model_config();
    open_attention_library(o, images, seq_len, m.cfg, gpu);
    const autoquant::generated_model g = autoquant::make_generated_model(m.cfg, o.seed);
    gpu.upload(m.cfg, g.text, images ? &g.vision : nullptr);
  }
  m.id = model_id(o);
  m.weight_bytes = static_cast<std::int64_t>(gpu.weight_bytes());
  return m;
}
#endif

// Whether `calib` is one of the bundled caption sizes: each is a prefix of the full COCO file.
bool is_bundled_captions(const fs::path& calib) {
  for (const char* size : {"small", "medium", "large"}) {
    try {
      std::error_code ec;
      if (fs::equivalent(calib, bundled(autoquant::bundled_captions(std::string(size))), ec)) return true;
    } catch (const error&) {
      return false;  // no bundled data here: the calibration file is the user's own
    }
  }
  return false;
}

// Where held-out samples come from: --eval-data (after the calibration samples when it is the
// calibration file itself), else the calibration source after its calibration samples; for the
// bundled captions that is the full COCO set, of which every bundled size is a prefix.
autoquant::held_out_source held_out_source_of(const autoquant::driver_options& o, const fs::path& calib, bool builtin,
                                              std::int64_t samples) {
  autoquant::held_out_source source;
  source.count = static_cast<std::size_t>(o.eval_samples ? *o.eval_samples : (builtin ? 16 : 128));
  source.first = static_cast<std::size_t>(samples);
  if (o.eval_data) {
    source.path = *o.eval_data;
    std::error_code ec;
    if (!fs::equivalent(source.path, calib, ec)) source.first = 0;
  } else {
    source.path = is_bundled_captions(calib) ? bundled("captions/coco2017_captions.txt") : calib;
  }
  return source;
}

// The held-out batches, shaped like the calibration ones (same kind of data, batch size, length).
autoquant::held_out_batches make_held_out(const autoquant::driver_options& o, const io::tokenizer& tok,
                                          const fs::path& calib, bool builtin, std::int64_t samples,
                                          std::int64_t seq_len, std::int64_t batch_size, bool images,
                                          const qwen3_vl::config& cfg) {
  const autoquant::held_out_source source = held_out_source_of(o, calib, builtin, samples);
  if ((source.path.extension() == ".jsonl") != images) {
    throw error("--eval-data " + source.path.string() + ": held-out data must be of the calibration's kind (" +
                (images ? "image-caption .jsonl" : "captions .txt") + ")");
  }
  if (images) {
    const auto calibration = io::read_image_caption_jsonl(calib, false, static_cast<std::size_t>(samples));
    return autoquant::held_out_image_caption_batches(tok, calibration, source, seq_len, cfg, o.image_max_pixels);
  }
  const std::vector<std::string> calibration = io::read_caption_lines(calib, static_cast<std::size_t>(samples));
  return autoquant::held_out_caption_batches(tok, calibration, source, batch_size, seq_len);
}

io::evaluation_data_info with_tokens(io::evaluation_data_info info, std::int64_t tokens) {
  info.tokens = tokens;
  return info;
}

// --export-dir: a checkpoint to export from, and every candidate exportable in the layout (the
// chosen mix is not known yet), before any work.
void check_exportable(const autoquant::driver_options& o) {
  if (!o.model_dir) throw error("--export-dir: needs --model (the built-in model has no checkpoint to export)");
  const hf_export::checkpoint_layout layout = hf_export::parse_checkpoint_layout(o.export_format);
  std::vector<std::string> formats = o.formats;
  if (o.recipes && !o.formats_given) formats = autoquant::recipe_names(autoquant::read_recipe_assignment(*o.recipes));
  for (const std::string& f : formats) {
    const quant::recipe_info& recipe = quant::find_recipe(f);
    if (recipe.quantizes && !hf_export::scheme_of(recipe.name)) {
      throw error("--export-format " + o.export_format + ": candidate recipe '" + std::string(recipe.name) +
                  "' cannot be exported (" + hf_export::refusal_reason(recipe.name, layout) + ")");
    }
  }
}

// The published manifest and state of this run, exported as aq-export would.
void export_chosen_mix(const autoquant::driver_options& o, const fs::path& out, const std::string& scheme,
                       autoquant::module_root root) {
  autoquant::export_options x;
  x.model_dir = *o.model_dir;
  x.recipes = (out / (scheme + "_quant_manifest.json")).string();
  x.state = (out / autoquant::state_filename(scheme)).string();
  x.output_dir = *o.export_dir;
  x.layout = hf_export::parse_checkpoint_layout(o.export_format);
  x.root = root;
  x.threads = o.threads;
  autoquant::run_export(x);
  std::printf("exported %s (%s)\n", o.export_dir->c_str(), o.export_format.c_str());
}

int run(const std::string& program, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  autoquant::driver_options o = autoquant::parse_arguments(args);
  if (o.help) {
    std::fputs(autoquant::help_text().c_str(), stdout);
    return 0;
  }
  if (program == "aq-eval" && !o.recipes) throw error("--recipes is required: aq-eval evaluates a given mix (see --help)");
  if (o.recipes) o.evaluate = true;
  if (!o.output_dir) throw error("--output-dir is required (see --help)");
  if (o.export_dir) check_exportable(o);
  const std::string device = effective_device(o, program);
  check_device(o, device);
  const bool gpu = device == "cuda";
  if (!gpu && o.threads != 0) default_thread_pool().resize(o.threads);
  const bool builtin = !o.model_dir;
  const std::int64_t samples =
      o.num_samples ? *o.num_samples
                    : (o.dataset_size ? autoquant::dataset_size_samples(*o.dataset_size) : (builtin ? 16 : 128));
  const std::int64_t seq_len = o.seq_len ? *o.seq_len : (builtin ? 32 : 512);
  const fs::path calib =
      o.calib ? fs::path(*o.calib) : bundled(autoquant::bundled_captions(o.dataset_size));
  const bool images = calib.extension() == ".jsonl";
  if (o.evaluate && images && gpu) {
    throw error("--evaluate: image-caption data is evaluated on the CPU only (--device cpu)");
  }
  // Inputs, sequence length and every output location, before the model loads (and before the
  // GPU is touched); the outputs are written staged and published together at the end
  // (docs/outputs.md).
  output_set outputs;
  autoquant::preflight(o, seq_len, calib, outputs);
  // A given mix: its recipes are the candidates unless --formats names them.
  std::optional<autoquant::recipe_assignment> given;
  if (o.recipes) {
    given = autoquant::read_recipe_assignment(*o.recipes);
    if (!o.formats_given) o.formats = autoquant::recipe_names(*given);
  }
#ifdef AQ_AUTOQUANT_GPU
  std::unique_ptr<autoquant_gpu::session> session;
  if (gpu) session = std::make_unique<autoquant_gpu::session>();
#endif

  // Everything that can be checked without the model's numbers is checked before it loads.
  const auto t_load = clock_type::now();
#ifdef AQ_AUTOQUANT_GPU
  const loaded_model model = gpu ? load_gpu_model(o, images, seq_len, *session) : load_cpu_model(o);
#else
  const loaded_model model = load_cpu_model(o);
#endif
  const double weights_seconds = since(t_load);
  const autoquant::module_root root = autoquant::effective_module_root(o);
  std::vector<std::string> patterns = autoquant::scope_patterns(o.scope, root);
  patterns.insert(patterns.end(), o.disable.begin(), o.disable.end());
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(model.cfg), o.formats, patterns, root);
  if (o.export_dir) {
    try {
      hf_export::check_candidates_exportable(space, hf_export::parse_checkpoint_layout(o.export_format));
    } catch (const error& x) {
      throw error("--export-dir: " + std::string(x.what()));
    }
  }
  std::optional<std::vector<std::size_t>> given_selection;
  if (given) given_selection = autoquant::assign_groups(space, *given);
  if (!given) (void)autoquant::checked_budget_bits(space, o.effective_bits, o.adjust_budget);

  const fs::path tokenizer_path = o.model_dir ? fs::path(*o.model_dir) / "tokenizer.json"
                                              : bundled("qwen3-tokenizer/tokenizer.json");
  const io::tokenizer tok = io::tokenizer::from_file(tokenizer_path);
  const std::int64_t batch_size = images ? 1 : o.batch_size;  // one image per batch
  const std::vector<io::calib_batch> batches =
      images ? autoquant::make_image_caption_batches(tok, calib, samples, seq_len, model.cfg, o.image_max_pixels)
             : autoquant::make_caption_batches(tok, calib, samples, batch_size, seq_len);
  std::int64_t used = 0;
  for (const io::calib_batch& b : batches) used += b.batch_size;
  std::optional<autoquant::held_out_batches> held_out;
  if (o.evaluate) held_out = make_held_out(o, tok, calib, builtin, samples, seq_len, batch_size, images, model.cfg);
#ifdef AQ_AUTOQUANT_GPU
  if (gpu) session->join_attention_library();  // what the load did not hide counts as loading
#endif
  const double load_seconds = since(t_load);

  autoquant::engine_options e;
  e.method = o.method;
  e.clamp = o.clamp;
  e.num_calib_steps = o.num_calib_steps ? *o.num_calib_steps : io::num_calib_steps(static_cast<std::int64_t>(batches.size()));
  e.num_score_steps = o.num_score_steps ? *o.num_score_steps
                                        : io::num_score_steps(static_cast<std::int64_t>(batches.size()), batch_size, o.score_size);
  e.effective_bits = o.effective_bits;
  e.adjust_budget = o.adjust_budget;
  e.custom_names = o.custom_names;
  e.scheme_name = o.scheme_name ? *o.scheme_name : "autoquant_" + std::string(autoquant::to_string(o.scope));
  e.quant_formats = o.quant_formats;
  e.score_size = o.score_size;
  e.scope = o.scope;
  e.model_id = model.id;
  io::dataset_info dataset;
  dataset.name = o.dataset_name ? *o.dataset_name : calib.stem().string();
  if (o.dataset_size) dataset.size = *o.dataset_size;
  dataset.root = calib.parent_path().string();
  dataset.captions_path = calib.string();
  dataset.max_calib_samples = samples;
  dataset.num_calib_samples = used;
  dataset.calib_seq_len = seq_len;
  dataset.batch_size = batch_size;
  dataset.num_calib_batches = static_cast<std::int64_t>(batches.size());
  e.dataset = dataset;
  e.evaluate = o.evaluate;
  e.given_selection = given_selection;
  e.evaluation.pareto_points = static_cast<std::size_t>(o.eval_points);

  autoquant::terminal_progress progress;
  const autoquant::progress_callback report = [&](std::string_view s, std::size_t d, std::size_t t) { progress(s, d, t); };
  autoquant::autoquant_result result;
  if (!gpu) {
    const qwen3_vl::vl_model vl(model.cfg, model.text, model.vision);
    autoquant::cpu_scoring_backend backend(
        space, autoquant::make_model_runner(
                   vl, batches, o.attention == "eager" ? cpu::masked_row_policy::attend_all : cpu::masked_row_policy::zero,
                   !o.keep_padding));
    if (held_out) {
      backend.evaluate_on(autoquant::make_model_runner(
          vl, held_out->batches,
          o.attention == "eager" ? cpu::masked_row_policy::attend_all : cpu::masked_row_policy::zero, !o.keep_padding));
    }
    result = autoquant::run_autoquant(space, backend, e, report);
  }
#ifdef AQ_AUTOQUANT_GPU
  if (gpu) {
    result = session->run({&o, &model.cfg, &space, &batches, images, batch_size, &e, report,
                           held_out ? &held_out->batches : nullptr});
  }
#endif
  if (result.evaluation) result.evaluation->data = with_tokens(held_out->info, result.evaluation->data.tokens);

  const auto t_write = clock_type::now();
  const fs::path out(*o.output_dir);
  outputs.stage();
  autoquant::write_outputs(outputs.directory(), space, result);
  if (result.evaluation) io::write_evaluation_reports(outputs.directory(), result.report, *result.evaluation);
  const std::string log = autoquant::render_run_log(space, result, e, load_seconds);
  write_file(outputs.directory() / autoquant::run_log_filename(e.scheme_name), log);
  const autoquant::batch_tensors stacked =
      images ? autoquant::batch_tensors{} : autoquant::stack_batches(batches);
  if (o.dump_batches) {
    write_file(outputs.staged(*o.dump_batches),
               images ? autoquant::render_image_batches(batches) : autoquant::render_batches(stacked));
  }
  if (o.result_json) {
    autoquant::result_json_context c;
    c.model = o.model_dir ? fs::path(*o.model_dir).filename().string() : "builtin";
    if (c.model.empty()) c.model = fs::path(*o.model_dir).parent_path().filename().string();
    c.formats = o.formats;
    c.effective_bits_requested = o.effective_bits;
    c.batch_size = batch_size;
    c.data_sha256 = images ? std::string() : autoquant::data_sha256(stacked);
    c.num_samples = used;
    c.seq_len = seq_len;
    c.num_batches = static_cast<std::int64_t>(batches.size());
    c.data = calib.string();
    c.attention = o.attention;
    c.threads = gpu ? 1 : default_thread_pool().size();
    c.model_load_s = load_seconds;
    c.weight_bytes = model.weight_bytes;
#ifdef AQ_AUTOQUANT_GPU
    if (gpu) {
      c.device = "cuda";
      c.gpu = session->device_name();
      c.precision = "bf16 weights and GEMMs, fp32 accumulation";
      c.dtype = "bfloat16";
      c.peak_allocated_bytes = c.peak_reserved_bytes = static_cast<std::int64_t>(session->peak_bytes());
    }
#endif
    write_file(outputs.staged(*o.result_json), autoquant::render_result_json(space, result, e, c) + "\n");
  }
  outputs.publish();
  if (o.export_dir) export_chosen_mix(o, out, e.scheme_name, root);
  const double write_seconds = since(t_write);
  std::fputs(log.c_str(), stdout);
#ifdef AQ_AUTOQUANT_GPU
  if (gpu) std::fputs(session->summary(load_seconds, weights_seconds, write_seconds).c_str(), stdout);
#endif
  (void)weights_seconds;
  (void)write_seconds;
  std::printf("wrote %s\n", out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string program = program_name(argc > 0 ? argv[0] : "aq-autoquant");
  try {
    return run(program, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return 2;
  }
}
