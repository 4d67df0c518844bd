// The GPU Qwen3-VL text decoder on the committed tiny checkpoints (tests/fixtures/qwen3_vl,
// bf16 safetensors read by the checkpoint loader), every quantity as ‖gpu − ref‖ / ‖ref‖, against
// two references made with transformers:
// - <name>.bf16_operands.safetensors: the fp32 model with exactly the GPU's bf16 GEMM operands
//   (linear inputs, dL/dY, dL/d(act)). With fp32 attention that is the GPU's arithmetic, so
//   loss, logits, every linear's X, Y, dL/dY and dL/d(inputs_embeds) agree within 1e-4 (measured
//   ≤ 3.6e-5: fp32 summation order) on the text cases. bf16 tensor-core attention (bf16 q/k/v/dO/P/dS, tiles in the
//   kernel's order) is not in that reference: loss, logits, X, Y within 1e-2, dL/dY within 3e-2.
// - <name>.reference.safetensors (all fp32): loss, logits, X and Y within 1e-2; dL/dY and
//   dL/d(inputs_embeds) within 3e-2, because bf16 operands alone move them by 2.2e-2 on
//   tiny_tied (k_proj of layer 0: the forward roundings shift the near-uniform attention of the
//   random model and its backward amplifies that; the bf16-operand reference itself is that far
//   from fp32, see make_bf16_operand_reference.py; 8.4e-3 on tiny_untied).
// Cases: eager and sdpa masking, fp32 and bf16 tensor-core attention, activations recomputed,
// saved for one layer, saved for all; and tiny_untied's image+text case through the GPU vision
// tower (check_image_case, its own tolerances).
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <unistd.h>
#include <string>
#include <vector>

#include "aq/backend/cuda/model/qwen3_vl_text.cuh"
#include "aq/backend/cuda/model/qwen3_vl_text_checkpoint.hpp"
#include "aq/backend/cuda/model/qwen3_vl_text_weights.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision.cuh"
#include "aq/backend/cuda/model/qwen3_vl_vision_checkpoint.hpp"
#include "cuda_test_util.cuh"

namespace test_qwen3_vl_fixtures_cuda {

namespace {

namespace fs = std::filesystem;
namespace acu = aq::cuda;
namespace qwen3_vl = aq::qwen3_vl;
using aq::bf16;
using aq_test::expect;
using aq_test::expect_close;

const fs::path fixture_dir = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl";

// ‖a − b‖₂ / ‖b‖₂ in fp64 (NaN when the sizes differ or a value is NaN).
double norm_rel(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || b.empty()) return std::nan("");
  double d = 0.0, n = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    d += e * e;
    n += static_cast<double>(b[i]) * b[i];
  }
  return n > 0.0 ? std::sqrt(d / n) : std::sqrt(d);
}

template <class T>
std::vector<T> download(const T* data, std::size_t n) {
  std::vector<T> host(n);
  AQ_CUDA_CHECK(cudaDeviceSynchronize());
  AQ_CUDA_CHECK(cudaMemcpy(host.data(), data, n * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}
float as_float(float v) { return v; }
float as_float(bf16 v) { return aq::bf16_to_float(v); }
std::vector<float> as_floats(const std::vector<float>& v) { return v; }

// Columns [col0, col0 + m.cols) of a [m.rows, total] fp32 host matrix, keyed by name.
template <class T>
void place(std::vector<float>& dst, const acu::device_matrix<const T>& m, std::int64_t col0, std::int64_t total) {
  const std::vector<T> host = download(m.data, static_cast<std::size_t>((m.rows - 1) * m.ld + m.cols));
  if (dst.empty()) dst.assign(static_cast<std::size_t>(m.rows * total), std::nanf(""));
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t c = 0; c < m.cols; ++c) {
      dst[static_cast<std::size_t>(r * total + col0 + c)] = as_float(host[static_cast<std::size_t>(r * m.ld + c)]);
    }
  }
}

// X from the forward calls, Y and dL/dY from the backward calls (the LM head in vocabulary chunks).
struct recorder : acu::device_linear_observer {
  std::map<std::string, std::vector<float>> seen;
  void on_forward(const acu::device_linear_call& c) override {
    place(seen[std::string(c.name) + ".input"], c.input, 0, c.input.cols);
  }
  void on_backward(const acu::device_linear_call& c) override {
    place(seen[std::string(c.name) + ".output"], c.output, c.row0, c.weight_rows);
    place(seen[std::string(c.name) + ".grad_output"], c.grad_output, c.row0, c.weight_rows);
  }
};

struct run_errors {
  double loss = 0.0, logits = 0.0, embed_grad = 0.0;
  double worst[2] = {0.0, 0.0};  // [X and Y, dL/dY]
  std::string worst_name[2];
  int compared = 0, missing = 0;
};

// The GPU run's errors against one reference file's "text.<impl>." tensors.
run_errors compare(const aq::safetensors_file& ref, const std::string& impl, const acu::text_run_result& got,
                   const std::vector<float>& embed_grad, const recorder& rec, const std::string& data_case = "text",
                   bool print_each = false) {
  const auto f = [&](const std::string& name) { return aq::to_float_vector(ref.at(name)); };
  const std::string p = data_case + "." + impl + ".";
  run_errors e;
  const double ref_loss = f(p + "loss")[0];
  e.loss = std::abs(got.loss - ref_loss) / std::abs(ref_loss);
  e.logits = norm_rel(got.logits, f(p + "logits"));
  e.embed_grad = norm_rel(embed_grad, f(p + "inputs_embeds.grad"));
  for (const aq::tensor_view& view : ref.tensors()) {
    const std::string name(view.name);
    if (name.rfind(p, 0) != 0 || name == p + "logits" || name == p + "loss" || name == p + "inputs_embeds.grad") continue;
    const std::string key = name.substr(p.size());
    const auto it = rec.seen.find(key);
    if (it == rec.seen.end()) {
      ++e.missing;
      continue;
    }
    const double err = norm_rel(it->second, f(name));
    if (print_each) std::printf("      %-70s %.3e\n", key.c_str(), err);
    const int g = key.ends_with(".grad_output") ? 1 : 0;
    if (!(err <= e.worst[g])) {
      e.worst[g] = err;
      e.worst_name[g] = key;
    }
    ++e.compared;
  }
  return e;
}

// saved_layers: how many layers keep their activations (the rest are recomputed in the backward).
void check_case(const std::string& checkpoint, const std::string& impl, bool tensor_cores, std::int64_t saved_layers) {
  std::printf("  %s, %s masking, attention %s, %lld layers' activations saved\n", checkpoint.c_str(), impl.c_str(),
              tensor_cores ? "bf16 tensor cores" : "fp32 storage", static_cast<long long>(saved_layers));
  const qwen3_vl::config cfg = aq::read_qwen3_vl_config(fixture_dir / checkpoint / "config.json");
  const aq::safetensors_checkpoint ck(fixture_dir / checkpoint);
  const acu::qwen3_vl_text_device_weights weights = acu::load_text_weights(cfg, ck);
  const aq::safetensors_file ref(fixture_dir / (checkpoint + ".reference.safetensors"), aq::readable_dtypes);
  const aq::safetensors_file ref_bf16(fixture_dir / (checkpoint + ".bf16_operands.safetensors"), aq::readable_dtypes);
  const auto i64 = [&](const std::string& name) { return aq::to_int64_vector(ref.at(name)); };

  qwen3_vl::text_batch batch;
  batch.batch = ref.at("text.input_ids").shape[0];
  batch.seq = ref.at("text.input_ids").shape[1];
  batch.input_ids = i64("text.input_ids");
  for (const std::int64_t m : i64("text.attention_mask")) batch.attention_mask.push_back(static_cast<std::uint8_t>(m));
  batch.labels = i64("text.labels");  // positions: computed by the model from ids and mask
  const std::vector<std::int64_t> positions = i64("text.position_ids");

  acu::qwen3_vl_text_model model(cfg, weights, batch.batch * batch.seq, 128);  // vocab 211: two chunks
  model.set_tensor_core_attention(tensor_cores);
  model.set_saved_layers(saved_layers);
  acu::text_run_options o;
  o.masked_rows = impl == "eager" ? acu::masked_row_policy::attend_all : acu::masked_row_policy::zero;
  o.logits = true;
  recorder rec;
  const acu::text_run_result got = model.run(batch, o, &rec);
  const std::int64_t N = batch.batch * batch.seq;
  const std::vector<float> embed_grad =
      as_floats(download(model.inputs_embeds_grad(N).data, static_cast<std::size_t>(N * cfg.text.hidden_size)));
  const int expected = 3 * static_cast<int>(7 * cfg.text.num_hidden_layers + 1);

  const run_errors same_ops = compare(ref_bf16, impl, got, embed_grad, rec);
  const double tol = tensor_cores ? 1e-2 : 1e-4, tol_grad = tensor_cores ? 3e-2 : 1e-4;
  expect(same_ops.compared == expected && same_ops.missing == 0,
         "bf16-operand reference: every linear's X, Y, dL/dY compared (" + std::to_string(same_ops.compared) + " of " +
             std::to_string(expected) + ")");
  expect_close(same_ops.loss, tol, "bf16-operand reference: loss " + std::to_string(got.loss));
  expect_close(same_ops.logits, tol, "bf16-operand reference: logits");
  expect_close(same_ops.embed_grad, tol_grad, "bf16-operand reference: dL/d(inputs_embeds)");
  expect_close(same_ops.worst[0], tol, "bf16-operand reference: X and Y of every linear (worst: " +
                                           same_ops.worst_name[0] + ")");
  expect_close(same_ops.worst[1], tol_grad, "bf16-operand reference: dL/dY of every linear (worst: " +
                                                same_ops.worst_name[1] + ")");

  const run_errors fp32 = compare(ref, impl, got, embed_grad, rec);
  expect(fp32.compared == expected && fp32.missing == 0,
         "fp32 reference: every linear's X, Y, dL/dY compared (" + std::to_string(fp32.compared) + " of " +
             std::to_string(expected) + ")");
  expect_close(fp32.loss, 1e-2, "fp32 reference: loss");
  expect_close(fp32.logits, 1e-2, "fp32 reference: logits");
  expect_close(fp32.embed_grad, 3e-2, "fp32 reference: dL/d(inputs_embeds)");
  expect_close(fp32.worst[0], 1e-2, "fp32 reference: X and Y of every linear (worst: " + fp32.worst_name[0] + ")");
  expect_close(fp32.worst[1], 3e-2, "fp32 reference: dL/dY of every linear (worst: " + fp32.worst_name[1] + ")");
  expect(qwen3_vl::rope_position_ids(batch.input_ids, batch.attention_mask, batch.batch, batch.seq) == positions,
         "the fixture's position ids are the ones the model computes");
}

// The image+caption case of tiny_untied: vision tower (fp32 attention) and decoder on the GPU,
// every linear of both and the patch Conv3d against the bf16-operand reference, every Linear
// against the fp32 one (per-linear errors: compare(..., print_each = true)).
void check_image_case(const std::string& impl, bool tensor_cores, bool vision_tensor_cores = false) {
  const std::string checkpoint = "tiny_untied";
  std::printf("  %s image+text, %s masking, decoder attention %s, vision attention %s\n", checkpoint.c_str(),
              impl.c_str(), tensor_cores ? "bf16 tensor cores" : "fp32 storage",
              vision_tensor_cores ? "bf16 tensor cores" : "fp32 storage");
  const qwen3_vl::config cfg = aq::read_qwen3_vl_config(fixture_dir / checkpoint / "config.json");
  const aq::safetensors_checkpoint ck(fixture_dir / checkpoint);
  const acu::qwen3_vl_text_device_weights weights = acu::load_text_weights(cfg, ck);
  const acu::qwen3_vl_vision_device_weights vision_weights = acu::load_vision_weights(cfg, ck);  // bf16 bytes as stored
  const aq::safetensors_file ref(fixture_dir / (checkpoint + ".reference.safetensors"), aq::readable_dtypes);
  const aq::safetensors_file ref_bf16(fixture_dir / (checkpoint + ".bf16_operands.safetensors"), aq::readable_dtypes);
  const auto i64 = [&](const std::string& name) { return aq::to_int64_vector(ref.at(name)); };

  qwen3_vl::text_batch batch;
  batch.batch = ref.at("image.input_ids").shape[0];
  batch.seq = ref.at("image.input_ids").shape[1];
  batch.input_ids = i64("image.input_ids");
  for (const std::int64_t m : i64("image.attention_mask")) batch.attention_mask.push_back(static_cast<std::uint8_t>(m));
  batch.labels = i64("image.labels");
  const std::vector<std::int64_t> positions = i64("image.position_ids");
  qwen3_vl::image_batch images;
  const aq::tensor_view& px = ref.at("image.pixel_values");
  images.pixel_values = aq::tensor({px.shape[0], px.shape[1]});
  images.pixel_values.storage() = aq::to_float_vector(px);
  const std::vector<std::int64_t> grid = i64("image.image_grid_thw");
  for (std::size_t i = 0; i + 2 < grid.size(); i += 3) images.grids.push_back({grid[i], grid[i + 1], grid[i + 2]});

  acu::qwen3_vl_text_model model(cfg, weights, batch.batch * batch.seq, 64);
  model.set_tensor_core_attention(tensor_cores);
  acu::qwen3_vl_vision_model vision(cfg, vision_weights, model);
  vision.set_tensor_core_attention(vision_tensor_cores);
  acu::text_run_options o;
  o.masked_rows = impl == "eager" ? acu::masked_row_policy::attend_all : acu::masked_row_policy::zero;
  o.logits = true;
  recorder rec;
  const acu::text_run_result got = acu::run_vl_batch(cfg, model, &vision, batch, &images, o, &rec);
  const std::int64_t N = batch.batch * batch.seq;
  const std::vector<float> embed_grad =
      as_floats(download(model.inputs_embeds_grad(N).data, static_cast<std::size_t>(N * cfg.text.hidden_size)));
  const qwen3_vl::vision_config& v = cfg.vision;
  // Decoder linears + LM head, 4 per vision block, the patch Conv3d, 2 per merger (X, Y, dL/dY each).
  const int linears = static_cast<int>(7 * cfg.text.num_hidden_layers + 1 + 4 * v.depth + 1 +
                                       2 * (1 + static_cast<std::int64_t>(v.deepstack_visual_indexes.size())));
  // Not 1e-4 as for text: the vision attention's fp32 output sits on bf16 rounding ties often
  // enough that fp32-level differences (summation order; the reference itself moves as much when
  // only its vision attention runs in fp64) flip roundings that grow through the tower to ~3e-3
  // at the logits (measured 3.7e-3 logits, 9.1e-3 worst dL/dY with fp32 decoder attention).
  // bf16 tensor-core attention in the tower as well rounds P, dS and the attention operands to
  // bf16 there too, as in the decoder (H100: logits 6.7e-3, X/Y 8.9e-3, dL/dY 1.4e-2 worst).
  const double tol = vision_tensor_cores ? 1.5e-2 : 1e-2, tol_grad = tensor_cores ? 3e-2 : 2e-2;
  const run_errors same_ops = compare(ref_bf16, impl, got, embed_grad, rec, "image");
  expect(same_ops.compared == 3 * linears && same_ops.missing == 0,
         "image, bf16-operand reference: every linear's X, Y, dL/dY compared (" + std::to_string(same_ops.compared) +
             " of " + std::to_string(3 * linears) + ")");
  expect_close(same_ops.loss, tol, "image, bf16-operand reference: loss " + std::to_string(got.loss));
  expect_close(same_ops.logits, tol, "image, bf16-operand reference: logits");
  expect_close(same_ops.embed_grad, tol_grad, "image, bf16-operand reference: dL/d(inputs_embeds)");
  expect_close(same_ops.worst[0], tol, "image, bf16-operand reference: X and Y of every linear (worst: " +
                                           same_ops.worst_name[0] + ")");
  expect_close(same_ops.worst[1], tol_grad, "image, bf16-operand reference: dL/dY of every linear (worst: " +
                                                same_ops.worst_name[1] + ")");
  const run_errors fp32 = compare(ref, impl, got, embed_grad, rec, "image");
  expect(fp32.compared == 3 * (linears - 1) && fp32.missing == 0,
         "image, fp32 reference: every Linear's X, Y, dL/dY compared (" + std::to_string(fp32.compared) + ")");
  const double tol_fp32 = vision_tensor_cores ? 1.5e-2 : 1e-2, tol_fp32_grad = 3e-2;
  expect_close(fp32.loss, tol_fp32, "image, fp32 reference: loss");
  expect_close(fp32.logits, tol_fp32, "image, fp32 reference: logits");
  expect_close(fp32.embed_grad, tol_fp32_grad, "image, fp32 reference: dL/d(inputs_embeds)");
  expect_close(fp32.worst[0], tol_fp32, "image, fp32 reference: X and Y of every linear (worst: " + fp32.worst_name[0] + ")");
  expect_close(fp32.worst[1], tol_fp32_grad, "image, fp32 reference: dL/dY of every linear (worst: " + fp32.worst_name[1] + ")");
  expect(qwen3_vl::rope_position_ids(batch.input_ids, batch.attention_mask, batch.batch, batch.seq, cfg.image_token_id,
                                     images.grids, v.spatial_merge_size) == positions,
         "the image case's position ids are the ones the model computes");
  // Vision blocks recomputed in the backward instead of kept: the same numbers bit for bit.
  vision.set_saved_blocks(false);
  recorder again;
  const acu::text_run_result re = acu::run_vl_batch(cfg, model, &vision, batch, &images, o, &again);
  bool same = re.logits == got.logits && re.loss == got.loss && again.seen.size() == rec.seen.size();
  for (const auto& [key, values] : rec.seen) {
    const auto it = again.seen.find(key);
    same = same && it != again.seen.end() && it->second == values;
  }
  expect(same, "vision blocks recomputed in the backward: logits, loss, every X, Y, dL/dY bit-identical");
}

}  // namespace

// A NaN in a bf16 weight is found while the weights are staged, and named as the CPU loader names it.
void nan_weight_is_named() {
  const fs::path dir = fs::temp_directory_path() / ("aq_cuda_nan_weight_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fixture_dir / "tiny_tied" / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  const std::string poisoned = "model.language_model.layers.1.mlp.down_proj.weight";
  {
    const aq::safetensors_file source(fixture_dir / "tiny_tied" / "model.safetensors");
    aq::safetensors_writer writer;
    for (const aq::tensor_view& v : source.tensors()) {
      std::vector<float> values(static_cast<std::size_t>(v.numel()));
      aq::convert_tensor(v, std::span<float>(values));
      if (v.name == poisoned) values.at(7) = std::nanf("");
      writer.add_rounded(v.name, v.dtype, std::vector<std::int64_t>(v.shape.begin(), v.shape.end()), values);
    }
    writer.write(dir / "model.safetensors");
  }
  const qwen3_vl::config cfg = aq::read_qwen3_vl_config(dir);
  const aq::safetensors_checkpoint ck(dir);
  std::string message;
  try {
    (void)acu::load_text_weights(cfg, ck);
  } catch (const aq::error& e) {
    message = e.what();
  }
  const std::string expected = (dir / "model.safetensors").string() + ": tensor " + poisoned +
                               ": nan at element 7 (weights must be finite)";
  expect(message == expected, "NaN weight named on the GPU load path: " + message);
  fs::remove_all(dir);
}

AQ_GPU_TEST("qwen3_vl cuda fixtures") {
  nan_weight_is_named();
  for (const char* checkpoint : {"tiny_tied", "tiny_untied"}) {
    for (const char* impl : {"eager", "sdpa"}) {
      check_case(checkpoint, impl, false, 0);
      check_case(checkpoint, impl, true, 0);
      check_case(checkpoint, impl, true, 1);
      check_case(checkpoint, impl, true, 99);  // all (clamped)
      if (std::string(checkpoint) == "tiny_untied") {
        check_image_case(impl, false);
        check_image_case(impl, true);
        check_image_case(impl, true, true);
      }
    }
  }
}

}  // namespace test_qwen3_vl_fixtures_cuda
