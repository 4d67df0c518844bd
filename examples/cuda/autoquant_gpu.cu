// aq-autoquant --device cuda: device weights, the memory plan (activations saved or recomputed,
// quantized-weight cache, sequences per pass), the model and vision tower, the CUDA scoring
// backend driven by the pipeline, and the GPU's measurements: per-stage wall times, the GEMM
// rate of the score pass next to a plain cuBLASLt bf16 GEMM measured in the same run, and the
// peak device memory.
#include "autoquant_gpu.hpp"

#include <aq/backend/cpu/qwen3_vl/model_runner.hpp>

#include "cli/memory_plan.hpp"
#include "cli/reference_peak.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <aq/backend/cuda/kernels/gemm_cublaslt.cuh>
#include <aq/backend/cuda/kernels/kernel_profile.cuh>
#include <aq/backend/cuda/model/qwen3_vl_text.cuh>
#include <aq/backend/cuda/model/qwen3_vl_text_weights.cuh>
#include <aq/backend/cuda/model/qwen3_vl_vision.cuh>
#include <aq/backend/cuda/model/qwen3_vl_vision_weights.cuh>
#include <aq/backend/cuda/scoring/cuda_scoring_backend.cuh>
#include <aq/model/qwen3_vl/text_batch_pack.hpp>
#include <aq/model/qwen3_vl/text_batch_padding.hpp>

namespace aq::autoquant_gpu {

namespace {

namespace acu = aq::cuda;

// Plain cuBLASLt bf16 GEMM (fp32 out) of the model's largest linear shape, random operands, the
// median of 20 timed runs after 3 warm-ups: the reference rate for the model's GEMMs.
double reference_gemm_tflops(acu::cublaslt_gemm& gemm, std::int64_t m, std::int64_t n, std::int64_t k, cudaStream_t s) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<bf16> hx(static_cast<std::size_t>(m * k)), hw(static_cast<std::size_t>(n * k));
  for (bf16& v : hx) v = float_to_bf16(dist(rng));
  for (bf16& v : hw) v = float_to_bf16(0.02f * dist(rng));
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

// What cuDNN's attention may hold (its deterministic backward's workspace grows with seq²: 0.6 GiB
// at 2 × 2,048 tokens, 4.1 GiB at 1 × 8,192 for 4B); longer shapes run on aq's kernels. A plan
// without a budget counts it as scratch (it fills the card); under a budget it comes out of the
// scratch estimate's slack, which the default plan's 1 GiB would otherwise push below the run's
// minimum at 2,048 tokens (measured peak with cuDNN: 10.23 GiB of a 10.28 GiB budget).
constexpr std::int64_t fused_attention_workspace = std::int64_t{1} << 30;

// The summary's name for --gpu-attention, with what the fused library did when it was asked for.
std::string attention_description(const std::string& attention) {
  if (attention == "fp32") return "fp32 storage, CUDA cores";
  if (attention == "tc") return "bf16 tensor cores (aq's kernels)";
  acu::fused_attention_library* library = acu::registered_fused_attention_library();
  return "bf16 tensor cores; " +
         (library != nullptr ? library->describe() : std::string("this build has no cuDNN attention")) +
         " on batches it takes";
}

std::size_t free_device_bytes() {
  std::size_t free_bytes = 0, total_bytes = 0;
  AQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

}  // namespace

struct session::state {
  cudaDeviceProp prop{};
  int device = 0;
  std::thread attention_opener;  // open_attention_library's, joined by run() and on destruction
  std::size_t baseline = 0;  // device memory in use by the context alone
  acu::qwen3_vl_text_device_weights weights;
  acu::qwen3_vl_vision_device_weights vision_weights;  // image data only
  // What the run leaves for the summary.
  const qwen3_vl::config* cfg = nullptr;
  const autoquant::driver_options* options = nullptr;
  autoquant::stage_timings timings;
  acu::cuda_scoring_stats stats;
  acu::kernel_profile calib_profile, score_profile;
  double ref_tflops = 0.0;
  std::int64_t max_tokens = 0, micro_rows = 0, model_max_tokens = 0, saved_layers = 0;
  bool pack = false, trim_padding = false, saved_activations = false;
  std::size_t activation_bytes_per_layer = 0;
  std::size_t budget_bytes = 0;  // the memory plan's budget (0: none, what fits on the card)
  double reference_peak = 0.0;   // ModelOpt's estimated peak for the run
  std::size_t dropped_minimum = 0;  // the default budget was dropped: the run's minimum
};

bool device_present() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

session::session() : state_(std::make_unique<state>()) {
  if (!device_present()) throw error("--device cuda: no CUDA device is visible to this process");
  AQ_CUDA_CHECK(cudaGetDevice(&state_->device));
  AQ_CUDA_CHECK(cudaGetDeviceProperties(&state_->prop, state_->device));
  AQ_CUDA_CHECK(cudaFree(nullptr));  // context first, so that it is not counted as ours
  state_->baseline = acu::device_bytes_in_use();
}

session::~session() { join_attention_library(); }

void session::join_attention_library() {
  if (state_->attention_opener.joinable()) state_->attention_opener.join();
}

void session::open_attention_library(const qwen3_vl::config& cfg, std::int64_t rows, std::int64_t seq) {
  acu::fused_attention_library* library = acu::registered_fused_attention_library();
  if (library == nullptr || state_->attention_opener.joinable()) return;
  const std::optional<acu::fused_attention_shape> likely =
      rows > 0 && seq > 0 ? std::optional(acu::qwen3_vl_text_model::fused_attention_shape_of(cfg, rows, seq)) : std::nullopt;
  state_->attention_opener = std::thread([library, likely, device = state_->device] {
    if (cudaSetDevice(device) == cudaSuccess) library->prepare(likely ? &*likely : nullptr);
  });
}

void session::upload(const qwen3_vl::config& cfg, const qwen3_vl::text_weights& text,
                     const qwen3_vl::vision_weights* vision) {
  state_->weights = acu::upload_text_weights(cfg, text);
  if (vision != nullptr) state_->vision_weights = acu::upload_vision_weights(cfg, *vision);
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
}

void session::adopt(acu::qwen3_vl_text_device_weights&& text, acu::qwen3_vl_vision_device_weights&& vision) {
  state_->weights = std::move(text);
  state_->vision_weights = std::move(vision);
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
}

std::size_t session::weight_bytes() const { return state_->weights.bytes() + state_->vision_weights.bytes(); }

std::string session::device_name() const { return state_->prop.name; }

std::size_t session::peak_bytes() const {
  return state_->stats.peak_device_bytes > state_->baseline ? state_->stats.peak_device_bytes - state_->baseline : 0;
}

autoquant::autoquant_result session::run(const run_inputs& in) {
  state& st = *state_;
  join_attention_library();
  const autoquant::driver_options& o = *in.options;
  const autoquant::gpu_options& g = o.gpu;
  const qwen3_vl::config& cfg = *in.cfg;
  const std::vector<io::calib_batch>& batches = *in.batches;
  const autoquant::engine_options& e = *in.engine;
  const bool images = in.images;
  const std::int64_t batch_size = in.batch_size;
  st.cfg = in.cfg;
  st.options = in.options;

  std::int64_t max_tokens = 0;
  std::vector<qwen3_vl::text_batch> text;
  std::vector<qwen3_vl::image_batch> image_batches;
  for (const io::calib_batch& b : batches) {
    max_tokens = std::max(max_tokens, b.batch_size * b.seq_len);
    text.push_back(autoquant::to_text_batch(b));
    if (images) image_batches.push_back(autoquant::to_image_batch(b).value_or(qwen3_vl::image_batch{}));
  }

  // Tokens per sequence each batch runs with: leading padding that cannot change a score is
  // dropped (image batches keep the positions of their untrimmed rows).
  const bool trim_padding = !o.keep_padding && o.attention != "eager";
  // Held-out batches: the model must hold at least one of their rows.
  std::vector<qwen3_vl::text_batch> held_out;
  std::int64_t held_out_width = 0;
  if (in.held_out != nullptr) {
    for (const io::calib_batch& b : *in.held_out) {
      held_out.push_back(autoquant::to_text_batch(b));
      const qwen3_vl::text_batch& t = held_out.back();
      held_out_width = std::max(held_out_width, trim_padding ? t.seq - qwen3_vl::droppable_padding_columns(t) : t.seq);
    }
  }
  std::vector<std::int64_t> run_seq;
  for (const qwen3_vl::text_batch& t : text) {
    run_seq.push_back(trim_padding ? t.seq - qwen3_vl::droppable_padding_columns(t) : t.seq);
  }
  // Trimmed batches are packed into passes (as many rows as the pass size allows; image rows
  // with their images).
  const bool pack = trim_padding;
  // The longer stage's batches: calibration and scoring each run the first batches.
  const auto stage_batches = static_cast<std::size_t>(std::clamp<std::int64_t>(
      std::max(e.num_calib_steps, e.num_score_steps), 0, static_cast<std::int64_t>(text.size())));
  std::int64_t stage_rows = 0;
  for (std::size_t i = 0; i < stage_batches; ++i) stage_rows += text[i].batch;
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
  // Packed image passes: as many patches as a pass of the largest batch's tokens could hold were
  // every token visual (merge² patches each), which is at least the largest batch's own, so
  // packing never raises the tower's peak above what the largest batch may need.
  const std::int64_t merge_area = cfg.vision.spatial_merge_size * cfg.vision.spatial_merge_size;
  const std::int64_t pass_patches = pack && max_patches > 0 ? merge_area * max_tokens : 0;
  max_patches = std::max(max_patches, pass_patches);
  // The device budget: none (max), the one given, or half of ModelOpt's estimated peak for these
  // batches (the default), dropped where the run cannot fit in it (memory_plan.hpp).
  using budget = autoquant::gpu_options::budget;
  bool whole_device = g.memory_budget == budget::whole_device;
  const double reference_peak = autoquant::modelopt_peak_bytes(cfg, max_tokens);
  const std::size_t budget_bytes = g.memory_budget == budget::gib
                                       ? static_cast<std::size_t>(g.memory_budget_gib * static_cast<double>(1ull << 30))
                                       : static_cast<std::size_t>(reference_peak / 2.0);
  std::size_t dropped_minimum = 0;  // the default budget dropped: what the run needed at least
  bool vision_saved_blocks = true;
  std::size_t vision_bytes = 0;
  const auto plan_vision = [&] {
    if (max_patches == 0) return;
    const std::size_t free_bytes = free_device_bytes();
    vision_bytes = acu::qwen3_vl_vision_model::device_bytes(cfg, max_patches, true, g.attention != "fp32");
    vision_saved_blocks = whole_device && vision_bytes < free_bytes / 4;
    if (!vision_saved_blocks) vision_bytes = acu::qwen3_vl_vision_model::device_bytes(cfg, max_patches, false, g.attention != "fp32");
  };
  plan_vision();
  // Sequences per device pass: --micro-batch, else whole batches; under a memory budget the
  // largest pass whose recompute-everything minimum fits (memory_plan.hpp).
  const std::int64_t full_rows = g.micro_batch > 0 ? std::min(g.micro_batch, batch_size) : batch_size;
  std::int64_t micro_rows = full_rows;
  // Tokens a pass of `rows` sequences can hold: packed passes never more than every row of a
  // stage at the widest trimmed width, and never fewer than a held-out row.
  const auto tokens_for_rows = [&](std::int64_t rows) {
    std::int64_t tokens = 0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      tokens = std::max(tokens, std::min(batches[i].batch_size, rows) * (pack ? batches[i].seq_len : run_seq[i]));
    }
    if (pack) tokens = std::min(tokens, stage_tokens);
    return std::max(tokens, held_out_width);
  };
  std::unique_ptr<acu::qwen3_vl_text_model> model_ptr;
  const auto build_model = [&](std::int64_t pass_tokens) {
    if (model_ptr && model_ptr->max_tokens() == pass_tokens) return;
    model_ptr.reset();
    model_ptr = std::make_unique<acu::qwen3_vl_text_model>(cfg, st.weights, pass_tokens);
    model_ptr->set_tensor_core_attention(g.attention != "fp32");
    model_ptr->set_fused_attention_library(g.attention == "cudnn", fused_attention_workspace);
  };
  const auto plan_inputs = [&] {
    const acu::qwen3_vl_text_model& m = *model_ptr;
    autoquant::memory_plan_inputs in;
    in.budget_bytes = budget_bytes;
    in.in_use_bytes = acu::device_bytes_in_use() - st.baseline + vision_bytes;
    if (vision_bytes > 0) in.in_use_what = "weights, fixed buffers and the vision tower's activations";
    in.scratch_bytes = scorer_scratch_bytes(cfg, m.max_tokens(), max_patches, m.vocab_chunk(), o.formats.size()) +
                       (g.attention == "cudnn" && whole_device ? static_cast<std::size_t>(fused_attention_workspace) : 0);
    in.layer_bytes = m.activation_bytes_per_layer();
    in.layers = cfg.text.num_hidden_layers;
    if (g.weight_cache_gib >= 0.0) in.max_cache_bytes = static_cast<std::size_t>(g.weight_cache_gib * static_cast<double>(1ull << 30));
    return in;
  };
  // Packed passes: the smallest that needs no more passes over the longer stage than `tokens`.
  const auto fewest_passes_smallest = [&](std::int64_t lo, std::int64_t tokens) {
    if (g.micro_batch > 0 || images) return tokens;
    std::vector<qwen3_vl::text_batch> stage;
    for (std::size_t i = 0; i < stage_batches; ++i) stage.push_back(qwen3_vl::trim_padding(text[i]));
    return autoquant::smallest_pass_with_passes_of(lo, tokens, [&](std::int64_t t) {
      return static_cast<std::int64_t>(qwen3_vl::pack_text_batches(stage, t).size());
    });
  };
  acu::cuda_scoring_options cuda_options;
  if (!whole_device) {
    // Packed passes shrink by tokens down to the widest sequence; split batches by sequences.
    // Image batches are never split, and --micro-batch fixes the pass.
    const std::int64_t widest =
        std::max(held_out_width, run_seq.empty() ? 1 : *std::max_element(run_seq.begin(), run_seq.end()));
    const std::int64_t hi = pack ? tokens_for_rows(full_rows) : full_rows;
    const std::int64_t lo = g.micro_batch > 0 || images ? hi : pack ? std::min(widest, hi) : 1;
    const auto tokens_of = [&](std::int64_t size) { return pack ? size : tokens_for_rows(size); };
    const std::int64_t best = autoquant::largest_fitting_pass(lo, hi, pack ? std::max<std::int64_t>(hi / 64, 1) : 1,
                                                              [&](std::int64_t size) {
                                                                build_model(tokens_of(size));
                                                                const autoquant::memory_plan_inputs in = plan_inputs();
                                                                return autoquant::minimum_bytes(in) <= in.budget_bytes;
                                                              });
    if (best > 0) {
      if (!pack) micro_rows = autoquant::balanced_pass_rows(full_rows, best);
      build_model(pack ? fewest_passes_smallest(lo, best) : tokens_for_rows(micro_rows));
      const autoquant::memory_plan plan =
          g.activations == "saved" || g.activations == "recompute"
              ? autoquant::plan_fixed_layers(plan_inputs(), g.activations == "saved" ? cfg.text.num_hidden_layers : 0,
                                             g.memory_budget == budget::half_modelopt, "--activations " + g.activations)
              : autoquant::plan_memory(plan_inputs());
      model_ptr->set_saved_layers(plan.saved_layers);
      model_ptr->allocate_activations();
      cuda_options.weight_cache_bytes = plan.weight_cache_bytes;
      st.budget_bytes = plan.budget_bytes;
    } else {
      build_model(tokens_of(lo));
      const autoquant::memory_plan_inputs in = plan_inputs();
      if (autoquant::when_nothing_fits(g.memory_budget == budget::half_modelopt) == autoquant::budget_step::refuse) {
        autoquant::plan_memory(in);  // throws, naming the run's minimum
      }
      // Half of ModelOpt's peak is below even the weights and the smallest pass (image data at
      // 4B): the plan without a budget, with whole passes again.
      dropped_minimum = autoquant::minimum_bytes(in);
      whole_device = true;
      plan_vision();
    }
  }
  if (whole_device) {
    build_model(tokens_for_rows(full_rows));
    acu::qwen3_vl_text_model& m = *model_ptr;
    const std::size_t free_bytes = free_device_bytes();
    const double saved_bytes =
        static_cast<double>(m.activation_bytes_per_layer()) * static_cast<double>(cfg.text.num_hidden_layers);
    m.set_saved_activations(g.activations == "saved" ||
                            (g.activations == "auto" && saved_bytes + static_cast<double>(vision_bytes) + 8.0 * (1ull << 30) <
                                                            static_cast<double>(free_bytes)));
    m.allocate_activations();
  }
  acu::qwen3_vl_text_model& model = *model_ptr;
  cuda_options.micro_batch_rows = micro_rows;
  cuda_options.recipe_gemms = g.recipe_gemm == "codes" ? acu::recipe_gemm::codes : acu::recipe_gemm::bf16;
  cuda_options.trim_padding = trim_padding;
  if (pack) cuda_options.max_pass_tokens = model.max_tokens();
  cuda_options.max_pass_patches = pass_patches;
  std::unique_ptr<acu::qwen3_vl_vision_model> vision;
  if (images) {
    vision = std::make_unique<acu::qwen3_vl_vision_model>(cfg, st.vision_weights, model);
    vision->set_saved_blocks(vision_saved_blocks);
    vision->set_tensor_core_attention(g.attention != "fp32");
    vision->set_fused_attention_library(g.attention == "cudnn", fused_attention_workspace);
    cuda_options.vision = vision.get();
    cuda_options.images = &image_batches;
  }
  if (whole_device) {
    const std::size_t free_bytes = free_device_bytes();
    const double margin = 4.0 * (1ull << 30);  // scorer scratch, cuBLASLt workspaces, CUB temp
    const double fit = std::max(0.0, static_cast<double>(free_bytes) - margin - static_cast<double>(vision_bytes));
    cuda_options.weight_cache_bytes = static_cast<std::size_t>(
        g.weight_cache_gib < 0.0 ? fit : std::min(fit, g.weight_cache_gib * static_cast<double>(1ull << 30)));
  }
  // With one packed pass per stage every Q(W) is formed once: a cache would hold memory for no reuse.
  if (pack && !images && stage_tokens <= model.max_tokens()) {
    cuda_options.weight_cache_bytes = 0;
  }
  if (g.profile_kernels) {
    cuda_options.calibration_profile = &st.calib_profile;
    cuda_options.scoring_profile = &st.score_profile;
  }
  acu::text_run_options run_options;
  run_options.masked_rows = o.attention == "eager" ? acu::masked_row_policy::attend_all : acu::masked_row_policy::zero;
  // The reference rate first (also warms cuBLASLt up): the largest linear, gate/up_proj.
  st.ref_tflops =
      reference_gemm_tflops(model.gemm(), max_tokens, cfg.text.intermediate_size, cfg.text.hidden_size, model.stream());
  if (in.held_out != nullptr) cuda_options.held_out = &held_out;
  acu::cuda_scoring_backend backend(*in.space, model, text, run_options, cuda_options);
  autoquant::autoquant_result result = autoquant::run_autoquant(*in.space, backend, e, in.progress);

  st.stats = backend.stats();
  st.timings = result.timings;
  st.max_tokens = max_tokens;
  st.micro_rows = micro_rows;
  st.model_max_tokens = model.max_tokens();
  st.saved_layers = model.saved_layers();
  st.saved_activations = model.saved_activations();
  st.activation_bytes_per_layer = model.activation_bytes_per_layer();
  st.pack = pack;
  st.trim_padding = trim_padding;
  st.reference_peak = reference_peak;
  st.dropped_minimum = dropped_minimum;
  return result;
}

std::string session::summary(double load_seconds, double weights_seconds, double write_seconds) const {
  const state& st = *state_;
  const qwen3_vl::config& cfg = *st.cfg;
  const autoquant::stage_timings& t = st.timings;
  std::string out;
  const auto add = [&out](const char* format, auto... args) {
    const int n = std::snprintf(nullptr, 0, format, args...);
    std::string line(static_cast<std::size_t>(n), '\0');
    std::snprintf(line.data(), line.size() + 1, format, args...);
    out += line;
  };
  const double score_tflops = st.stats.scoring_gemm_flops / t.scoring / 1e12;
  const double calib_tflops = st.stats.calibration_gemm_flops / t.calibration / 1e12;
  add("gpu: %s\n", st.prop.name);
  add("stage wall time [s]: load %.3f (weights %.3f), calibrate %.3f, score %.3f, search %.3f, write %.3f; "
      "auto_quantize %.3f, end to end %.3f\n",
      load_seconds, weights_seconds, t.calibration, t.scoring, t.search, write_seconds, t.calibration + t.scoring + t.search,
      load_seconds + t.calibration + t.scoring + t.search + write_seconds);
  add("GEMM work: calibrate %.1f TFLOP (%.1f TFLOP/s over the stage), score %.1f TFLOP (%.1f TFLOP/s over the "
      "stage); plain cuBLASLt bf16 GEMM [%lld x %lld x %lld]: %.1f TFLOP/s; score stage at %.0f%% of it\n",
      st.stats.calibration_gemm_flops / 1e12, calib_tflops, st.stats.scoring_gemm_flops / 1e12, score_tflops,
      static_cast<long long>(st.max_tokens), static_cast<long long>(cfg.text.intermediate_size),
      static_cast<long long>(cfg.text.hidden_size), st.ref_tflops, 100.0 * score_tflops / st.ref_tflops);
  if (t.evaluation > 0.0) {
    add("evaluation wall time [s]: %.3f (%.2fx auto_quantize)\n", t.evaluation,
        t.evaluation / (t.calibration + t.scoring + t.search));
  }
  add("device memory: weights %.2f GiB, peak in use %.2f GiB (above the context's %.2f GiB)\n",
      static_cast<double>(weight_bytes()) / (1 << 30), static_cast<double>(peak_bytes()) / (1 << 30),
      static_cast<double>(st.baseline) / (1 << 30));
  const auto gib = [](double bytes) { return bytes / static_cast<double>(1ull << 30); };
  const autoquant::gpu_options::budget kind = st.options->gpu.memory_budget;
  if (kind == autoquant::gpu_options::budget::whole_device) {
    add("memory budget: none (--memory-budget-gib max); ModelOpt's estimated peak for this run %.2f GiB\n",
        gib(st.reference_peak));
  } else if (kind == autoquant::gpu_options::budget::gib) {
    add("memory budget: %.2f GiB (--memory-budget-gib); ModelOpt's estimated peak for this run %.2f GiB\n",
        gib(static_cast<double>(st.budget_bytes)), gib(st.reference_peak));
  } else if (st.dropped_minimum > 0) {
    add("memory budget: none: half of ModelOpt's estimated peak for this run (%.2f GiB of %.2f) is below the "
        "least this run can hold (%.2f GiB), so the plan without a budget runs\n",
        gib(st.reference_peak / 2.0), gib(st.reference_peak), gib(static_cast<double>(st.dropped_minimum)));
  } else {
    add("memory budget: %.2f GiB, half of ModelOpt's estimated peak for this run (%.2f GiB; --memory-budget-gib "
        "max for the fastest plan)\n",
        gib(static_cast<double>(st.budget_bytes)), gib(st.reference_peak));
  }
  const std::string activations =
      st.saved_activations ? "saved"
                           : (st.saved_layers == 0 ? "recomputed"
                                                   : std::to_string(st.saved_layers) + " of " +
                                                         std::to_string(cfg.text.num_hidden_layers) + " layers saved");
  const std::string passes = st.pack ? "packed passes of at most " + std::to_string(st.model_max_tokens) + " tokens"
                                     : std::to_string(st.micro_rows) + (st.micro_rows == 1 ? " sequence" : " sequences") +
                                           " per device pass";
  add("attention: %s; activations: %s (%.2f GiB per layer); quantized weights cached: %.2f GiB; %s\n",
      attention_description(st.options->gpu.attention).c_str(), activations.c_str(),
      static_cast<double>(st.activation_bytes_per_layer) / (1 << 30),
      static_cast<double>(st.stats.weight_cache_bytes) / (1 << 30), passes.c_str());
  add("recipe products: %zu on e4m3/int8 codes (--recipe-gemm %s)\n", st.stats.code_products,
      st.options->gpu.recipe_gemm.c_str());
  add("tokens run: %lld of %lld in the calibration and score batches, %lld device passes (%s)\n",
      static_cast<long long>(st.stats.run_tokens), static_cast<long long>(st.stats.batch_tokens),
      static_cast<long long>(st.stats.passes),
      st.trim_padding ? "leading padding that cannot change a score dropped" : "every padding column kept");
  if (st.options->gpu.profile_kernels) {
    out += "GPU time per kernel class [s] (CUDA events):\n| class | calibrate | calls | score | calls |\n|---|---:|---:|---:|---:|\n";
    double ct = 0.0, stt = 0.0;
    for (int c = 0; c < static_cast<int>(acu::kernel_class::count); ++c) {
      const auto k = static_cast<acu::kernel_class>(c);
      ct += st.calib_profile.ms(k);
      stt += st.score_profile.ms(k);
      add("| %s | %.3f | %lld | %.3f | %lld |\n", acu::kernel_class_name(k), st.calib_profile.ms(k) / 1e3,
          static_cast<long long>(st.calib_profile.calls(k)), st.score_profile.ms(k) / 1e3,
          static_cast<long long>(st.score_profile.calls(k)));
    }
    add("| sum | %.3f | | %.3f | |\n", ct / 1e3, stt / 1e3);
    const double model_tf = st.stats.scoring_gemm_flops / 1e12;
    const double gemm_s = (st.score_profile.ms(acu::kernel_class::gemm) + st.score_profile.ms(acu::kernel_class::score_gemm)) / 1e3;
    add("score-stage GEMMs: %.1f TFLOP in %.3f s of GEMM time = %.1f TFLOP/s (%.0f%% of the plain cuBLASLt rate)\n",
        model_tf, gemm_s, model_tf / gemm_s, 100.0 * model_tf / gemm_s / st.ref_tflops);
  }
  return out;
}

}  // namespace aq::autoquant_gpu
