// aq-autoquant-cuda: aq-autoquant's LM-scope gradient run with calibration and scoring on the
// GPU. Same flags and report files as aq-autoquant; prints per-stage wall times (load,
// calibrate, score, search, write), the GEMM rate of the score pass next to a plain cuBLASLt
// bf16 GEMM measured in the same run, and the peak device memory.
#pragma nv_diag_suppress 20012  // Eigen through the CPU engine headers
#include <aq/autoquant/bundled_data.hpp>
#include <aq/autoquant/default_model.hpp>
#include <aq/autoquant/engine.hpp>
#include <aq/autoquant/memory_plan.hpp>
#include <aq/autoquant/model_runner.hpp>
#include <aq/autoquant/options.hpp>
#include <aq/autoquant/progress.hpp>
#include <aq/autoquant/search_space.hpp>
#include <aq/core/output_set.hpp>
#include <aq/io/calib_batches.hpp>

#include "aq-autoquant-cuda.hpp"
#pragma nv_diag_default 20012

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <aq/backend/cuda/cuda_scoring_backend.cuh>
#include <aq/backend/cuda/gemm_cublaslt.cuh>
#include <aq/backend/cuda/kernel_profile.cuh>
#include <aq/backend/cuda/qwen3_vl_text.cuh>
#include <aq/backend/cuda/qwen3_vl_vision.cuh>

namespace {

namespace fs = std::filesystem;
using aq::bf16;
using aq::error;
namespace qwen3_vl = aq::qwen3_vl;
namespace autoquant = aq::autoquant;
namespace io = aq::io;
namespace acu = aq::cuda;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// Bundled data: data/ in the source tree or <prefix>/share/aq/data (aq/autoquant/bundled_data.hpp).
fs::path bundled(const std::string& relative) {
  return autoquant::find_bundled(relative, {AQ_INSTALL_DATA_DIR, AQ_SOURCE_DATA_DIR});
}

// Plain cuBLASLt bf16 GEMM (fp32 out) of the model's largest linear shape, random operands, the
// median of 20 timed runs after 3 warm-ups: the reference rate for the model's GEMMs.
double reference_gemm_tflops(acu::cublaslt_gemm& gemm, std::int64_t m, std::int64_t n, std::int64_t k, cudaStream_t s) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<bf16> hx(static_cast<std::size_t>(m * k)), hw(static_cast<std::size_t>(n * k));
  for (bf16& v : hx) v = aq::float_to_bf16(dist(rng));
  for (bf16& v : hw) v = aq::float_to_bf16(0.02f * dist(rng));
  const acu::device_buffer<bf16> x(hx), w(hw);
  acu::device_buffer<float> y(static_cast<std::size_t>(m * n));
  const auto run = [&] {
    gemm.linear_forward(acu::device_matrix<const bf16>{x.data(), m, k, k}, acu::device_matrix<const bf16>{w.data(), n, k, k},
                        acu::device_matrix<float>{y.data(), m, n, n}, nullptr, false, s);
  };
  cudaEvent_t a = nullptr, b = nullptr;
  AQ_CUDA_CHECK(cudaEventCreate(&a));
  AQ_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) run();
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    AQ_CUDA_CHECK(cudaEventRecord(a, s));
    run();
    AQ_CUDA_CHECK(cudaEventRecord(b, s));
    AQ_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0.0f;
    AQ_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  AQ_CUDA_CHECK(cudaEventDestroy(a));
  AQ_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) / (ms[ms.size() / 2] * 1e-3) / 1e12;
}

// A size in GiB: the shared number parser, then the range.
double parse_gib(const std::string& flag, const std::string& text) {
  const double v = autoquant::detail::parse_double(flag, text);
  if (!(v >= 0.0) || v > 1e6) throw error(flag + ": expected a size in GiB >= 0, got '" + text + "'");
  return v;
}

// Device scratch the scorer and calibration grow to at most (quantized X and Y_r per recipe, one
// quantized weight outside the cache) over the decoder's linears at `tokens` rows and the vision
// tower's at `patches` rows, the GEMM workspace, and 256 MiB for small buffers and allocation
// granularity.
std::size_t scorer_scratch_bytes(const qwen3_vl::config& cfg, std::int64_t tokens, std::int64_t patches,
                                 std::int64_t vocab_chunk, std::size_t recipes) {
  const qwen3_vl::text_config& t = cfg.text;
  const qwen3_vl::vision_config& v = cfg.vision;
  const auto n = [](std::int64_t x) { return static_cast<std::size_t>(x); };
  const std::int64_t text_in = std::max({t.hidden_size, t.intermediate_size, t.num_attention_heads * t.head_dim});
  const std::int64_t text_out =
      std::max({t.hidden_size, t.intermediate_size, t.num_attention_heads * t.head_dim, vocab_chunk});
  const std::int64_t vision_in = std::max({v.hidden_size, v.intermediate_size, v.in_channels * v.temporal_patch_size *
                                                                                    v.patch_size * v.patch_size});
  const std::int64_t vision_out = std::max({3 * v.hidden_size, v.intermediate_size});
  const std::size_t xq = std::max(n(tokens * text_in), n(patches * vision_in));
  const std::size_t yr = std::max(n(tokens * text_out), n(patches * vision_out));
  const std::size_t wq = std::max(n(text_out * text_in), n(vision_out * vision_in));
  return recipes * (xq * 2 + yr * 4) + wq * 2 + (std::size_t{32} << 20) + (std::size_t{256} << 20);
}

int run(int argc, char** argv) {
  std::vector<std::string> all(argv + 1, argv + argc);
  // The GPU driver's own flags, taken out before the shared parser sees the rest.
  std::string gpu_attention = "tc";
  bool profile_kernels = false;
  std::string activations = "auto";
  double cache_gib = -1.0;  // < 0: whatever fits with a margin
  double budget_gib = -1.0;  // < 0: no budget (what fits on the card)
  std::int64_t micro_batch = 0;  // sequences per device pass; 0: whole batches (or what the budget allows)
  std::vector<std::string> args;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto value = [&]() -> const std::string& {
      if (i + 1 >= all.size()) throw error(all[i] + ": missing value");
      return all[++i];
    };
    if (all[i] == "--gpu-attention") {
      gpu_attention = value();
      if (gpu_attention != "tc" && gpu_attention != "fp32") throw error("--gpu-attention: expected tc or fp32, got " + gpu_attention);
    } else if (all[i] == "--activations") {
      activations = value();
      if (activations != "auto" && activations != "saved" && activations != "recompute") {
        throw error("--activations: expected auto, saved or recompute, got " + activations);
      }
    } else if (all[i] == "--profile-kernels") {
      profile_kernels = true;
    } else if (all[i] == "--weight-cache-gib") {
      const std::string flag = all[i];  // value() moves i
      cache_gib = parse_gib(flag, value());
    } else if (all[i] == "--memory-budget-gib") {
      const std::string flag = all[i];
      budget_gib = parse_gib(flag, value());
    } else if (all[i] == "--micro-batch") {
      const std::string flag = all[i];
      micro_batch = autoquant::detail::parse_int(flag, value(), 1);
    } else {
      args.push_back(all[i]);
    }
  }
  autoquant::driver_options o = autoquant::parse_arguments(args);
  if (o.help) {
    std::fputs("aq-autoquant-cuda: the flags of aq-autoquant (below), gradient method; calibration and scoring\n"
               "run on the GPU (decoder, and the vision tower for image-caption data). GPU flags:\n"
               "  --gpu-attention tc|fp32   bf16 tensor-core attention (default) or fp32 storage on CUDA cores, in the\n"
               "                            decoder and the vision tower\n"
               "  --activations auto|saved|recompute  keep every layer's activations for the backward (auto:\n"
               "                            when they fit with 8 GiB to spare) or recompute them per layer\n"
               "  --weight-cache-gib X      memory for quantized weights kept across batches (default: free - 4 GiB)\n"
               "  --memory-budget-gib X     hold at most X GiB on the GPU: saves as many layers' activations as\n"
               "                            fit, then caches quantized weights in the rest; halves the sequences per\n"
               "                            device pass until the minimum fits (error if one sequence does not)\n"
               "  --micro-batch N           device passes of at most N sequences, or of N x --seq-len tokens of packed\n"
               "                            trimmed sequences (same scores, less memory)\n"
               "  --profile-kernels         GPU time per kernel class (CUDA events; adds a little overhead)\n\n",
               stdout);
    std::fputs(autoquant::help_text().c_str(), stdout);
    return 0;
  }
  if (!o.output_dir) throw error("--output-dir is required (see --help)");
  if (o.method != autoquant::score_method::gradient) throw error("--method: only gradient runs on the GPU");
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
  // Inputs, sequence length and every output location, before the GPU is touched; the outputs
  // are written staged and published together at the end (docs/outputs.md).
  aq::output_set outputs;
  aq_cuda_driver::preflight(o, seq_len, calib, outputs);

  int device = 0;
  AQ_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  AQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  AQ_CUDA_CHECK(cudaFree(nullptr));  // context first, so that it is not counted as ours
  const std::size_t baseline = acu::device_bytes_in_use();

  // load: config, weights onto the GPU, tokenized batches.
  const auto t_load = clock_type::now();
  qwen3_vl::config cfg;
  acu::qwen3_vl_text_device_weights weights;
  acu::qwen3_vl_vision_device_weights vision_weights;  // uploaded for image data only
  std::string model_id;
  if (o.model_dir) {
    const fs::path dir(*o.model_dir);
    cfg = aq_cuda_driver::read_config(dir);
    weights = aq_cuda_driver::load_weights(dir, cfg);
    if (images) vision_weights = aq_cuda_driver::load_vision_weights(dir, cfg);
    model_id = dir.string();
  } else {
    cfg = autoquant::default_model_config();
    const autoquant::generated_model g = autoquant::make_generated_model(cfg, o.seed);
    weights = acu::upload_text_weights(cfg, g.text);
    if (images) vision_weights = acu::upload_vision_weights(g.vision);
    model_id = "builtin:qwen3-vl-default(seed=" + std::to_string(o.seed) + ")";
  }
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
  const double weights_seconds = since(t_load);
  const autoquant::module_root root = autoquant::effective_module_root(o);
  std::vector<std::string> patterns = autoquant::scope_patterns(o.scope, root);
  patterns.insert(patterns.end(), o.disable.begin(), o.disable.end());
  const autoquant::search_space space = aq_cuda_driver::make_space(cfg, o.formats, patterns, root);
  const double budget = o.adjust_budget
                            ? autoquant::adjusted_budget_bits(o.effective_bits, space.total_params, space.disabled_params)
                            : o.effective_bits;
  autoquant::check_budget(space, budget, o.effective_bits);
  const fs::path tokenizer_path = o.model_dir ? fs::path(*o.model_dir) / "tokenizer.json"
                                              : bundled("qwen3-tokenizer/tokenizer.json");
  const std::vector<io::calib_batch> batches =
      images ? aq_cuda_driver::make_image_batches(tokenizer_path, calib, samples, seq_len, cfg)
             : aq_cuda_driver::make_batches(tokenizer_path, calib, samples, o.batch_size, seq_len);
  const std::int64_t batch_size = images ? 1 : o.batch_size;  // one image per batch
  std::int64_t used = 0, max_tokens = 0;
  std::vector<qwen3_vl::text_batch> text;
  std::vector<qwen3_vl::image_batch> image_batches;
  for (const io::calib_batch& b : batches) {
    used += b.batch_size;
    max_tokens = std::max(max_tokens, b.batch_size * b.seq_len);
    text.push_back(autoquant::to_text_batch(b));
    if (images) image_batches.push_back(autoquant::to_image_batch(b).value_or(qwen3_vl::image_batch{}));
  }
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
  e.model_id = model_id;
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

  // Tokens per sequence each batch runs with: leading padding that cannot change a score is
  // dropped from text batches (never from image batches, which run whole).
  const bool trim_padding = !o.keep_padding && o.attention != "eager";
  std::vector<std::int64_t> run_seq;
  for (const qwen3_vl::text_batch& t : text) {
    run_seq.push_back(trim_padding && !images ? t.seq - qwen3_vl::droppable_padding_columns(t) : t.seq);
  }
  // Trimmed caption batches are packed into passes (as many rows as the pass size allows).
  const bool pack = trim_padding && !images;
  std::int64_t stage_rows = 0;
  for (std::size_t i = 0; i < text.size() && static_cast<std::int64_t>(i) < std::max(e.num_calib_steps, e.num_score_steps); ++i) {
    stage_rows += text[i].batch;
  }
  // Every row of a stage at the widest trimmed width: the most one packed pass can need.
  const std::int64_t stage_tokens =
      pack && !run_seq.empty() ? stage_rows * *std::max_element(run_seq.begin(), run_seq.end()) : 0;

  // What the vision tower will hold for the largest image batch (allocated on its first run):
  // every block's activations when they take under a quarter of the free memory and no budget is
  // set, else only the block inputs (blocks recomputed in the backward).
  std::int64_t max_patches = 0;
  for (const qwen3_vl::image_batch& img : image_batches) {
    if (!img.grids.empty()) max_patches = std::max(max_patches, img.pixel_values.dim(0));
  }
  bool vision_saved_blocks = true;
  std::size_t vision_bytes = 0;
  if (max_patches > 0) {
    std::size_t free_bytes = 0, total_bytes = 0;
    AQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    vision_bytes = acu::qwen3_vl_vision_model::device_bytes(cfg, max_patches, true, gpu_attention == "tc");
    vision_saved_blocks = budget_gib < 0.0 && vision_bytes < free_bytes / 4;
    if (!vision_saved_blocks) vision_bytes = acu::qwen3_vl_vision_model::device_bytes(cfg, max_patches, false, gpu_attention == "tc");
  }
  // Sequences per device pass: --micro-batch, else whole batches; under a memory budget halved
  // until the recompute-everything minimum fits.
  std::int64_t micro_rows = micro_batch > 0 ? std::min(micro_batch, batch_size) : batch_size;
  std::unique_ptr<acu::qwen3_vl_text_model> model_ptr;
  acu::cuda_scoring_options cuda_options;
  while (true) {
    std::int64_t pass_tokens = 0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      pass_tokens = std::max(pass_tokens, std::min(batches[i].batch_size, micro_rows) * (pack ? batches[i].seq_len : run_seq[i]));
    }
    // Packed passes hold up to that many tokens, and never more than every row of a stage at the
    // widest trimmed width.
    if (pack) pass_tokens = std::min(pass_tokens, stage_tokens);
    model_ptr.reset();
    model_ptr = std::make_unique<acu::qwen3_vl_text_model>(cfg, weights, pass_tokens);
    acu::qwen3_vl_text_model& m = *model_ptr;
    m.set_tensor_core_attention(gpu_attention == "tc");
    if (budget_gib < 0.0) {
      std::size_t free_bytes = 0, total_bytes = 0;
      AQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      const double saved_bytes =
          static_cast<double>(m.activation_bytes_per_layer()) * static_cast<double>(cfg.text.num_hidden_layers);
      m.set_saved_activations(activations == "saved" ||
                              (activations == "auto" && saved_bytes + static_cast<double>(vision_bytes) + 8.0 * (1ull << 30) <
                                                           static_cast<double>(free_bytes)));
      m.allocate_activations();
      break;
    }
    autoquant::memory_plan_inputs in;
    in.budget_bytes = static_cast<std::size_t>(budget_gib * static_cast<double>(1ull << 30));
    in.in_use_bytes = acu::device_bytes_in_use() - baseline + vision_bytes;
    if (vision_bytes > 0) in.in_use_what = "weights, fixed buffers and the vision tower's activations";
    in.scratch_bytes = scorer_scratch_bytes(cfg, pass_tokens, max_patches, m.vocab_chunk(), o.formats.size());
    in.layer_bytes = m.activation_bytes_per_layer();
    in.layers = cfg.text.num_hidden_layers;
    if (cache_gib >= 0.0) in.max_cache_bytes = static_cast<std::size_t>(cache_gib * static_cast<double>(1ull << 30));
    autoquant::memory_plan plan;
    try {
      plan = autoquant::plan_memory(in);
    } catch (const error&) {
      if (micro_batch > 0 || micro_rows == 1) throw;  // a fixed micro-batch, or nothing left to halve
      micro_rows = (micro_rows + 1) / 2;
      continue;
    }
    if (activations == "saved" || activations == "recompute") {
      const std::int64_t k = activations == "saved" ? cfg.text.num_hidden_layers : 0;
      const std::size_t need = autoquant::activation_sets_bytes(k, in.layers, in.layer_bytes);
      if (in.in_use_bytes + in.scratch_bytes + need > in.budget_bytes) {
        throw error("--memory-budget-gib: --activations " + activations + " needs " +
                    autoquant::format_gib(in.in_use_bytes + in.scratch_bytes + need) + ", above the budget");
      }
      plan.saved_layers = k;
      plan.activation_bytes = need;
      plan.weight_cache_bytes = std::min(in.budget_bytes - in.in_use_bytes - in.scratch_bytes - need, in.max_cache_bytes);
    }
    m.set_saved_layers(plan.saved_layers);
    m.allocate_activations();
    cuda_options.weight_cache_bytes = plan.weight_cache_bytes;
    break;
  }
  acu::qwen3_vl_text_model& model = *model_ptr;
  cuda_options.micro_batch_rows = micro_rows;
  cuda_options.trim_padding = trim_padding;
  if (pack) cuda_options.max_pass_tokens = model.max_tokens();
  std::unique_ptr<acu::qwen3_vl_vision_model> vision;
  if (images) {
    vision = std::make_unique<acu::qwen3_vl_vision_model>(cfg, vision_weights, model);
    vision->set_saved_blocks(vision_saved_blocks);
    vision->set_tensor_core_attention(gpu_attention == "tc");
    cuda_options.vision = vision.get();
    cuda_options.images = &image_batches;
  }
  if (budget_gib < 0.0) {
    std::size_t free_bytes = 0, total_bytes = 0;
    AQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const double margin = 4.0 * (1ull << 30);  // scorer scratch, cuBLASLt workspaces, CUB temp
    const double fit = std::max(0.0, static_cast<double>(free_bytes) - margin - static_cast<double>(vision_bytes));
    cuda_options.weight_cache_bytes =
        static_cast<std::size_t>(cache_gib < 0.0 ? fit : std::min(fit, cache_gib * static_cast<double>(1ull << 30)));
  }
  // With one packed pass per stage every Q(W) is formed once: a cache would hold memory for no reuse.
  if (pack && stage_tokens <= model.max_tokens()) {
    cuda_options.weight_cache_bytes = 0;
  }
  acu::kernel_profile calib_profile, score_profile;
  if (profile_kernels) {
    cuda_options.calibration_profile = &calib_profile;
    cuda_options.scoring_profile = &score_profile;
  }
  acu::text_run_options run_options;
  run_options.masked_rows = o.attention == "eager" ? acu::masked_row_policy::attend_all : acu::masked_row_policy::zero;
  // The reference rate first (also warms cuBLASLt up): the largest linear, gate/up_proj.
  const double ref_tflops =
      reference_gemm_tflops(model.gemm(), max_tokens, cfg.text.intermediate_size, cfg.text.hidden_size, model.stream());
  autoquant::terminal_progress progress;
  acu::cuda_scoring_backend backend(space, model, text, run_options, cuda_options);
  const autoquant::autoquant_result result = autoquant::run_autoquant(
      space, backend, e, [&](std::string_view s, std::size_t d, std::size_t t) { progress(s, d, t); });
  const acu::cuda_scoring_stats& stats = backend.stats();
  const std::size_t peak = stats.peak_device_bytes > baseline ? stats.peak_device_bytes - baseline : 0;

  const auto t_write = clock_type::now();
  const fs::path out(*o.output_dir);
  outputs.stage();
  aq_cuda_driver::write_outputs(outputs.directory(), space, result);
  const std::string log = aq_cuda_driver::run_log(space, result, e, load_seconds);
  aq::write_file(outputs.directory() / aq_cuda_driver::run_log_filename(e.scheme_name), log);
  if (o.dump_batches) aq_cuda_driver::dump_batches(outputs.staged(*o.dump_batches), batches);
  if (o.result_json) {
    aq_cuda_driver::json_fields f;
    f.model = o.model_dir ? fs::path(*o.model_dir).filename().string() : "builtin";
    if (f.model.empty()) f.model = fs::path(*o.model_dir).parent_path().filename().string();
    f.formats = o.formats;
    f.effective_bits_requested = o.effective_bits;
    f.batch_size = batch_size;
    f.images = images;
    f.num_samples = used;
    f.seq_len = seq_len;
    f.num_batches = static_cast<std::int64_t>(batches.size());
    f.data = calib.string();
    f.attention = o.attention;
    f.model_load_s = load_seconds;
    f.weight_bytes = weights.bytes() + vision_weights.bytes();
    f.peak_bytes = peak;
    f.gpu = prop.name;
    aq::write_file(outputs.staged(*o.result_json), aq_cuda_driver::result_json(space, result, e, f, batches) + "\n");
  }
  outputs.publish();
  const double write_seconds = since(t_write);

  const double score_tflops = stats.scoring_gemm_flops / result.timings.scoring / 1e12;
  const double calib_tflops = stats.calibration_gemm_flops / result.timings.calibration / 1e12;
  std::fputs(log.c_str(), stdout);
  std::printf("gpu: %s\n", prop.name);
  std::printf("stage wall time [s]: load %.3f (weights %.3f), calibrate %.3f, score %.3f, search %.3f, write %.3f; "
              "auto_quantize %.3f, end to end %.3f\n",
              load_seconds, weights_seconds, result.timings.calibration, result.timings.scoring, result.timings.search,
              write_seconds, result.timings.calibration + result.timings.scoring + result.timings.search,
              load_seconds + result.timings.calibration + result.timings.scoring + result.timings.search + write_seconds);
  std::printf("GEMM work: calibrate %.1f TFLOP (%.1f TFLOP/s over the stage), score %.1f TFLOP (%.1f TFLOP/s over the "
              "stage); plain cuBLASLt bf16 GEMM [%lld x %lld x %lld]: %.1f TFLOP/s; score stage at %.0f%% of it\n",
              stats.calibration_gemm_flops / 1e12, calib_tflops, stats.scoring_gemm_flops / 1e12, score_tflops,
              static_cast<long long>(max_tokens), static_cast<long long>(cfg.text.intermediate_size),
              static_cast<long long>(cfg.text.hidden_size), ref_tflops, 100.0 * score_tflops / ref_tflops);
  std::printf("device memory: weights %.2f GiB, peak in use %.2f GiB (above the context's %.2f GiB)\n",
              static_cast<double>(weights.bytes() + vision_weights.bytes()) / (1 << 30), static_cast<double>(peak) / (1 << 30),
              static_cast<double>(baseline) / (1 << 30));
  std::printf("attention: %s; activations: %s (%.2f GiB per layer); quantized weights cached: %.2f GiB; %s\n",
              gpu_attention == "tc" ? "bf16 tensor cores" : "fp32 storage, CUDA cores",
              model.saved_activations()
                  ? "saved"
                  : (model.saved_layers() == 0 ? "recomputed"
                                               : (std::to_string(model.saved_layers()) + " of " +
                                                  std::to_string(cfg.text.num_hidden_layers) + " layers saved")
                                                     .c_str()),
              static_cast<double>(model.activation_bytes_per_layer()) / (1 << 30),
              static_cast<double>(stats.weight_cache_bytes) / (1 << 30),
              (pack ? "packed passes of at most " + std::to_string(model.max_tokens()) + " tokens"
                    : std::to_string(micro_rows) + " sequences per device pass")
                  .c_str());
  std::printf("tokens run: %lld of %lld in the calibration and score batches, %lld device passes (%s)\n",
              static_cast<long long>(stats.run_tokens), static_cast<long long>(stats.batch_tokens), static_cast<long long>(stats.passes),
              trim_padding ? "leading padding that cannot change a score dropped" : "every padding column kept");
  if (profile_kernels) {
    std::printf("GPU time per kernel class [s] (CUDA events):\n| class | calibrate | calls | score | calls |\n|---|---:|---:|---:|---:|\n");
    double ct = 0.0, stt = 0.0;
    for (int c = 0; c < static_cast<int>(acu::kernel_class::count); ++c) {
      const auto k = static_cast<acu::kernel_class>(c);
      ct += calib_profile.ms(k);
      stt += score_profile.ms(k);
      std::printf("| %s | %.3f | %lld | %.3f | %lld |\n", acu::kernel_class_name(k), calib_profile.ms(k) / 1e3,
                  calib_profile.calls(k), score_profile.ms(k) / 1e3, score_profile.calls(k));
    }
    std::printf("| sum | %.3f | | %.3f | |\n", ct / 1e3, stt / 1e3);
    const double model_tf = stats.scoring_gemm_flops / 1e12;
    const double gemm_s = (score_profile.ms(acu::kernel_class::gemm) + score_profile.ms(acu::kernel_class::score_gemm)) / 1e3;
    std::printf("score-stage GEMMs: %.1f TFLOP in %.3f s of GEMM time = %.1f TFLOP/s (%.0f%% of the plain cuBLASLt rate)\n",
                model_tf, gemm_s, model_tf / gemm_s, 100.0 * model_tf / gemm_s / ref_tflops);
  }
  std::printf("wrote %s\n", out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-autoquant-cuda: %s\n", e.what());
    return 2;
  }
}
