// aq-autoquant: the reference driver. Model dir (or the built-in default) + calibration data +
// formats + budget -> ModelOpt-compatible manifest and per-layer sensitivity reports, the
// quantizer state of the chosen recipes and a run log. `--help` lists every flag and recipe.
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <aq/autoquant/bundled_data.hpp>
#include <aq/autoquant/cpu_backend.hpp>
#include <aq/autoquant/default_model.hpp>
#include <aq/autoquant/engine.hpp>
#include <aq/autoquant/model_runner.hpp>
#include <aq/autoquant/options.hpp>
#include <aq/autoquant/outputs.hpp>
#include <aq/autoquant/preflight.hpp>
#include <aq/autoquant/progress.hpp>
#include <aq/autoquant/result_json.hpp>
#include <aq/autoquant/search_space.hpp>
#include <aq/core/output_set.hpp>
#include <aq/core/thread_pool.hpp>
#include <aq/io/calib_batches.hpp>
#include <aq/io/calib_dataset.hpp>
#include <aq/autoquant/calib_inputs.hpp>
#include <aq/io/hf_config.hpp>
#include <aq/io/image.hpp>
#include <aq/io/safetensors.hpp>
#include <aq/io/tokenizer.hpp>
#include <aq/model/qwen3_vl/checkpoint_source.hpp>
#include <aq/model/qwen3_vl/modules.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>
#include <aq/model/qwen3_vl/vl_model.hpp>

namespace {

namespace fs = std::filesystem;
using namespace aq;

// Bundled data: data/ in the source tree or <prefix>/share/aq/data (aq/autoquant/bundled_data.hpp).
fs::path bundled(const std::string& relative) {
  return autoquant::find_bundled(relative, {AQ_INSTALL_DATA_DIR, AQ_SOURCE_DATA_DIR});
}

struct loaded_model {
  qwen3_vl::config cfg;
  std::unique_ptr<safetensors_checkpoint> checkpoint;
  qwen3_vl::text_weights text;
  qwen3_vl::vision_weights vision;
  std::string id;
  std::int64_t weight_bytes = 0;
};

// The model dir and its config were checked by autoquant::preflight before this runs.
loaded_model load_model(const autoquant::driver_options& o) {
  loaded_model m;
  if (o.model_dir) {
    const fs::path dir(*o.model_dir);
    m.cfg = read_qwen3_vl_config(dir);
    m.checkpoint = std::make_unique<safetensors_checkpoint>(dir);
    qwen3_vl::check_parameters(m.cfg, *m.checkpoint);  // every tensor named and shaped as the config says
    const qwen3_vl::weight_source source = qwen3_vl::checkpoint_weight_source(*m.checkpoint);
    m.text = qwen3_vl::load_text_weights(m.cfg, source);
    m.vision = qwen3_vl::load_vision_weights(m.cfg, source);
    m.id = dir.string();
  } else {
    m.cfg = autoquant::default_model_config();
    autoquant::generated_model g = autoquant::make_generated_model(m.cfg, o.seed);
    m.text = std::move(g.text);
    m.vision = std::move(g.vision);
    m.id = "builtin:qwen3-vl-default(seed=" + std::to_string(o.seed) + ")";
  }
  for (const quantizable_module& q : qwen3_vl::quantizable_modules(m.cfg)) m.weight_bytes += q.numel() * 4;
  return m;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  autoquant::driver_options o = autoquant::parse_arguments(args);
  if (o.help) {
    std::fputs(autoquant::help_text().c_str(), stdout);
    return 0;
  }
  if (!o.output_dir) throw error("--output-dir is required (see --help)");
  if (o.threads != 0) default_thread_pool().resize(o.threads);
  const bool builtin = !o.model_dir;
  const std::int64_t samples =
      o.num_samples ? *o.num_samples
                    : (o.dataset_size ? autoquant::dataset_size_samples(*o.dataset_size) : (builtin ? 16 : 128));
  const std::int64_t seq_len = o.seq_len ? *o.seq_len : (builtin ? 32 : 512);
  const fs::path calib =
      o.calib ? fs::path(*o.calib) : bundled(autoquant::bundled_captions(o.dataset_size));
  const bool images = calib.extension() == ".jsonl";
  if (o.dump_batches && images) {
    throw error("--dump-batches: image-caption batches differ in length; only caption data can be dumped");
  }
  // Inputs, sequence length and every output location, before the model loads; the outputs are
  // written staged and published together at the end (docs/outputs.md).
  output_set outputs;
  autoquant::preflight(o, seq_len, calib, outputs);

  // Everything that can be checked without the model's numbers is checked before it loads.
  const auto t_load = std::chrono::steady_clock::now();
  loaded_model model = load_model(o);
  const autoquant::module_root root = autoquant::effective_module_root(o);
  std::vector<std::string> patterns = autoquant::scope_patterns(o.scope, root);
  patterns.insert(patterns.end(), o.disable.begin(), o.disable.end());
  const autoquant::search_space space =
      autoquant::make_search_space(qwen3_vl::quantizable_modules(model.cfg), o.formats, patterns, root);
  const double budget = o.adjust_budget
                            ? autoquant::adjusted_budget_bits(o.effective_bits, space.total_params, space.disabled_params)
                            : o.effective_bits;
  autoquant::check_budget(space, budget, o.effective_bits);

  const fs::path tokenizer_path = o.model_dir ? fs::path(*o.model_dir) / "tokenizer.json"
                                              : bundled("qwen3-tokenizer/tokenizer.json");
  const io::tokenizer tok = io::tokenizer::from_file(tokenizer_path);
  const std::int64_t batch_size = images ? 1 : o.batch_size;  // one image per batch
  const std::vector<io::calib_batch> batches =
      images ? autoquant::make_image_caption_batches(tok, calib, samples, seq_len, model.cfg)
             : autoquant::make_caption_batches(tok, calib, samples, batch_size, seq_len);
  std::int64_t used = 0;
  for (const io::calib_batch& b : batches) used += b.batch_size;
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

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

  const qwen3_vl::vl_model vl(model.cfg, model.text, model.vision);
  autoquant::cpu_scoring_backend backend(
      space, autoquant::make_model_runner(
                 vl, batches, o.attention == "eager" ? cpu::masked_row_policy::attend_all : cpu::masked_row_policy::zero,
                 !o.keep_padding));
  autoquant::terminal_progress progress;
  const autoquant::autoquant_result result =
      autoquant::run_autoquant(space, backend, e, [&](std::string_view s, std::size_t d, std::size_t t) { progress(s, d, t); });

  const fs::path out(*o.output_dir);
  outputs.stage();
  autoquant::write_outputs(outputs.directory(), space, result);
  const std::string log = autoquant::render_run_log(space, result, e, load_seconds);
  write_file(outputs.directory() / autoquant::run_log_filename(e.scheme_name), log);
  const autoquant::batch_tensors stacked =
      images ? autoquant::batch_tensors{} : autoquant::stack_batches(batches);
  if (o.dump_batches) {
    write_file(outputs.staged(*o.dump_batches), autoquant::render_batches(stacked));
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
    c.threads = default_thread_pool().size();
    c.model_load_s = load_seconds;
    c.weight_bytes = model.weight_bytes;
    write_file(outputs.staged(*o.result_json), autoquant::render_result_json(space, result, e, c) + "\n");
  }
  outputs.publish();
  std::fputs(log.c_str(), stdout);
  std::printf("wrote %s\n", out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-autoquant: %s\n", e.what());
    return 2;
  }
}
