// The CPU Qwen3-VL text decoder against transformers: tiny random checkpoints (bf16 weights) and
// fp32 reference activations recorded with Qwen3VLForConditionalGeneration on the CPU
// (fixtures/make_qwen3_vl_fixture.py). Errors are max|ours − ref| / max|ref| per tensor.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "aq/backend/cpu/qwen3_vl/text_model.hpp"
#include "aq/backend/cpu/qwen3_vl/vl_model.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/model/qwen3_vl/checkpoint_source.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"

namespace test_qwen3_vl_model {

namespace {

namespace fs = std::filesystem;
using namespace aq;
using namespace aq::qwen3_vl;

const fs::path fixture_dir = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl";

config read_config(const fs::path& path) { return read_qwen3_vl_config(path); }

struct reference {
  safetensors_file file;
  explicit reference(const fs::path& path) : file(path, readable_dtypes) {}
  std::vector<float> f(const std::string& name) const { return to_float_vector(file.at(name)); }
  std::vector<std::int64_t> i(const std::string& name) const { return to_int64_vector(file.at(name)); }
  bool has(const std::string& name) const { return file.find(name) != nullptr; }
};

double rel_error(const float* ours, const std::vector<float>& ref) {
  double diff = 0.0;
  double scale = 0.0;
  for (std::size_t k = 0; k < ref.size(); ++k) {
    diff = std::max(diff, std::abs(static_cast<double>(ours[k]) - ref[k]));
    scale = std::max(scale, std::abs(static_cast<double>(ref[k])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

// Copies what the model reports for every linear, keyed like the fixture.
struct recorder : linear_observer {
  std::map<std::string, std::vector<float>> seen;
  std::vector<std::string> forward_order, backward_order;
  static std::vector<float> copy(const const_matrix_view& m) {
    std::vector<float> out;
    for (std::int64_t r = 0; r < m.rows; ++r) out.insert(out.end(), m.row(r), m.row(r) + m.cols);
    return out;
  }
  void on_forward(const linear_call& c) override {
    forward_order.emplace_back(c.name);
    seen[std::string(c.name) + ".input"] = copy(c.input);
    seen[std::string(c.name) + ".output"] = copy(c.output);
  }
  void on_backward(const linear_call& c) override {
    backward_order.emplace_back(c.name);
    seen[std::string(c.name) + ".grad_output"] = copy(c.grad_output);
    // The observer's views are the module's: re-running its GEMM reproduces Y exactly.
    const tensor again = rerun_linear(c, c.weight, c.input);
    REQUIRE(copy(again.matrix()) == copy(c.output));
  }
};

text_batch batch_from(const reference& ref, const std::string& c) {
  const std::vector<std::int64_t> ids = ref.i(c + ".input_ids");
  const tensor_view& view = ref.file.at(c + ".input_ids");
  text_batch b;
  b.batch = view.shape[0];
  b.seq = view.shape[1];
  b.input_ids = ids;
  for (const std::int64_t m : ref.i(c + ".attention_mask")) b.attention_mask.push_back(static_cast<std::uint8_t>(m));
  b.position_ids = ref.i(c + ".position_ids");
  b.labels = ref.i(c + ".labels");
  return b;
}

struct tolerances {
  double logits = 1e-5, loss = 1e-5, activations = 1e-5, grads = 1e-4;
};

void check_case(const std::string& checkpoint, const std::string& impl, const std::string& case_name = "text") {
  const config cfg = read_config(fixture_dir / checkpoint / "config.json");
  const safetensors_checkpoint ck(fixture_dir / checkpoint);
  const text_weights weights = load_text_weights(cfg, checkpoint_weight_source(ck));
  CHECK(weights.lm_head.empty() == cfg.tie_word_embeddings);
  const vision_weights vweights = load_vision_weights(cfg, checkpoint_weight_source(ck));
  const reference ref(fixture_dir / (checkpoint + ".reference.safetensors"));
  const text_batch batch = batch_from(ref, case_name);
  image_batch images;
  const bool with_images = ref.has(case_name + ".pixel_values");
  if (with_images) {
    const tensor_view& pv = ref.file.at(case_name + ".pixel_values");
    images.pixel_values = tensor({pv.shape[0], pv.shape[1]});
    images.pixel_values.storage() = to_float_vector(pv);
    const std::vector<std::int64_t> g = ref.i(case_name + ".image_grid_thw");
    for (std::size_t k = 0; k + 2 < g.size(); k += 3) images.grids.push_back({g[k], g[k + 1], g[k + 2]});
  }
  // The fixture's positions are what rope_position_ids computes (4.57 semantics: pads get 1).
  CHECK(rope_position_ids(batch.input_ids, batch.attention_mask, batch.batch, batch.seq, cfg.image_token_id,
                          images.grids, cfg.vision.spatial_merge_size) == batch.position_ids);

  const vl_model model(cfg, weights, vweights);
  run_options options;
  options.masked_rows = impl == "eager" ? cpu::masked_row_policy::attend_all : cpu::masked_row_policy::zero;
  recorder rec;
  text_batch no_positions = batch;
  no_positions.position_ids.clear();  // computed inside from the ids and grids
  const text_result out = model.run(no_positions, with_images ? &images : nullptr, options, &rec);
  const std::string p = case_name + "." + impl + ".";
  const double ref_loss = ref.f(p + "loss")[0];
  const double loss_err = std::abs(out.loss - ref_loss) / std::abs(ref_loss);
  const double logit_err = rel_error(out.logits.data(), ref.f(p + "logits"));
  const double embed_err = rel_error(out.inputs_embeds_grad.data(), ref.f(p + "inputs_embeds.grad"));
  MESSAGE(checkpoint << " " << case_name << " " << impl << ": loss " << out.loss << " vs " << ref_loss << " (rel " << loss_err
                     << "), logits rel " << logit_err << ", inputs_embeds grad rel " << embed_err);
  const tolerances tol;
  CHECK(loss_err <= tol.loss);
  CHECK(logit_err <= tol.logits);
  CHECK(embed_err <= tol.grads);

  // Every linear of the fixture (7 per layer + lm_head) with input, output and grad_output.
  // Vision: 4 per block, 2 per merger, and the patch-embedding Conv3d (not an nn.Linear in the fixture).
  const std::int64_t vision_modules =
      with_images ? 4 * cfg.vision.depth + 2 + 2 * static_cast<std::int64_t>(cfg.vision.deepstack_visual_indexes.size()) : 0;
  const std::int64_t expected_modules = 7 * cfg.text.num_hidden_layers + 1 + vision_modules;
  CHECK(static_cast<std::int64_t>(rec.forward_order.size()) == expected_modules + (with_images ? 1 : 0));
  CHECK(static_cast<std::int64_t>(rec.backward_order.size()) == expected_modules + (with_images ? 1 : 0));
  double worst_act = 0.0, worst_grad = 0.0;
  std::string worst_act_name, worst_grad_name;
  int compared = 0;
  for (const tensor_view& view : ref.file.tensors()) {
    const std::string name(view.name);
    if (name.rfind(p, 0) != 0 || name == p + "logits" || name == p + "loss" || name == p + "inputs_embeds.grad") continue;
    const std::string key = name.substr(p.size());
    REQUIRE_MESSAGE(rec.seen.count(key) == 1, "no activation recorded for " << key);
    const std::vector<float>& ours = rec.seen.at(key);
    const std::vector<float> theirs = ref.f(name);
    REQUIRE(ours.size() == theirs.size());
    const double err = rel_error(ours.data(), theirs);
    const bool is_grad = key.ends_with(".grad_output");
    double& worst = is_grad ? worst_grad : worst_act;
    if (err > worst) {
      worst = err;
      (is_grad ? worst_grad_name : worst_act_name) = key;
    }
    CHECK_MESSAGE(err <= (is_grad ? tol.grads : tol.activations), key << " relative error " << err);
    ++compared;
  }
  CHECK(compared == 3 * expected_modules);
  MESSAGE("  worst linear input/output rel " << worst_act << " (" << worst_act_name << "), worst grad_output rel "
                                             << worst_grad << " (" << worst_grad_name << ")");
}

}  // namespace

TEST_CASE("Qwen3-VL text decoder matches transformers (eager attention): loss, logits, every linear's X, Y, dL/dY") {
  for (const char* checkpoint : {"tiny_tied", "tiny_untied"}) {
    SUBCASE(checkpoint) { check_case(checkpoint, "eager"); }
  }
}

TEST_CASE("Qwen3-VL text decoder matches transformers (sdpa): fully masked padding rows give zeros") {
  for (const char* checkpoint : {"tiny_tied", "tiny_untied"}) {
    SUBCASE(checkpoint) { check_case(checkpoint, "sdpa"); }
  }
}

TEST_CASE("Qwen3-VL image + text (vision tower, DeepStack, image M-RoPE positions) matches transformers") {
  SUBCASE("eager") { check_case("tiny_untied", "eager", "image"); }
  SUBCASE("sdpa") { check_case("tiny_untied", "sdpa", "image"); }
}

TEST_CASE("Qwen3-VL untied checkpoint without lm_head.weight is rejected") {
  config cfg = read_config(fixture_dir / "tiny_untied" / "config.json");
  const safetensors_checkpoint ck(fixture_dir / "tiny_untied");
  weight_source source = checkpoint_weight_source(ck);
  CHECK_NOTHROW(load_text_weights(cfg, source));
  source.contains = [](const std::string& name) { return name != "lm_head.weight"; };
  CHECK_THROWS_AS(load_text_weights(cfg, source), aq::error);
  cfg.text.head_dim = 8;  // shapes no longer match the checkpoint
  CHECK_THROWS_WITH_AS(load_text_weights(cfg, checkpoint_weight_source(ck)),
                       doctest::Contains("expected"), aq::error);
}

}  // namespace test_qwen3_vl_model
