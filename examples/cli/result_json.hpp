// Machine-readable run summary for the side-by-side comparison with ModelOpt (schema
// "aq.autoquant.compare/v1", benchmarks/modelopt/README.md), and the calibration batches as a
// safetensors file (input_ids, attention_mask, labels: int64 [N, T]) so ModelOpt can run on them.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <span>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aq/core/dtype.hpp"
#include "aq/core/error.hpp"
#include "aq/engine/engine.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/report/json_writer.hpp"
#include "aq/search/search_space.hpp"

namespace aq::autoquant {

// SHA-256 (FIPS 180-4), for the data digest both tools write.
class sha256 {
 public:
  void update(std::span<const std::uint8_t> bytes) {
    for (const std::uint8_t b : bytes) {
      block_[fill_++] = b;
      ++length_;
      if (fill_ == 64) compress();
    }
  }
  void update(std::string_view text) {
    update(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  }
  std::string hex() {
    const std::uint64_t bits = length_ * 8;
    const std::uint8_t pad = 0x80;
    update(std::span<const std::uint8_t>(&pad, 1));
    const std::uint8_t zero = 0;
    while (fill_ != 56) update(std::span<const std::uint8_t>(&zero, 1));
    for (int i = 7; i >= 0; --i) {
      const auto b = static_cast<std::uint8_t>(bits >> (8 * i));
      update(std::span<const std::uint8_t>(&b, 1));
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (const std::uint32_t word : h_) {
      for (int i = 7; i >= 0; --i) out += digits[(word >> (4 * i)) & 0xfu];
    }
    return out;
  }

 private:
  static constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static constexpr std::array<std::uint32_t, 64> k{
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    std::array<std::uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = (std::uint32_t{block_[4 * i]} << 24) | (std::uint32_t{block_[4 * i + 1]} << 16) |
             (std::uint32_t{block_[4 * i + 2]} << 8) | std::uint32_t{block_[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::array<std::uint32_t, 8> v = h_;
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      const std::uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
      const std::uint32_t t1 = v[7] + s1 + ch + k[i] + w[i];
      const std::uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      const std::uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      const std::uint32_t t2 = s0 + maj;
      v = {t1 + t2, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (int i = 0; i < 8; ++i) h_[i] += v[i];
    fill_ = 0;
  }

  std::array<std::uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> block_{};
  std::size_t fill_ = 0;
  std::uint64_t length_ = 0;
};

// The batches' rows as [N, T] int64 tensors (all batches must share one sequence length), labels
// in the reference's form.
struct batch_tensors {
  std::int64_t rows = 0;
  std::int64_t seq = 0;
  std::vector<std::int64_t> input_ids, attention_mask, labels;
};

inline batch_tensors stack_batches(std::span<const io::calib_batch> batches) {
  batch_tensors t;
  for (const io::calib_batch& b : batches) {
    if (t.rows == 0) t.seq = b.seq_len;
    if (b.seq_len != t.seq) {
      throw error("--dump-batches: batches have different sequence lengths (" + std::to_string(t.seq) + " and " +
                  std::to_string(b.seq_len) + "); [N, T] tensors need one");
    }
    t.rows += b.batch_size;
    t.input_ids.insert(t.input_ids.end(), b.input_ids.begin(), b.input_ids.end());
    t.attention_mask.insert(t.attention_mask.end(), b.attention_mask.begin(), b.attention_mask.end());
    // io marks ignored targets (the pad id) with -100; the reference's labels are a plain copy of
    // input_ids (its loss ignores the pad id itself). Writing that form makes the dumped file and
    // the digest byte-identical to the ones ModelOpt's runner writes for the same captions.
    for (std::size_t i = 0; i < b.labels.size(); ++i) {
      t.labels.push_back(b.labels[i] == io::ignore_label ? b.input_ids.at(i) : b.labels[i]);
    }
  }
  return t;
}

// sha256 over, for k in (input_ids, attention_mask, labels): the ASCII key, then the int64
// little-endian row-major bytes (the README's data_sha256).
inline std::string data_sha256(const batch_tensors& t) {
  sha256 h;
  const auto add = [&](std::string_view key, const std::vector<std::int64_t>& values) {
    h.update(key);
    for (const std::int64_t v : values) {
      std::array<std::uint8_t, 8> bytes{};
      for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i));
      h.update(bytes);
    }
  };
  add("input_ids", t.input_ids);
  add("attention_mask", t.attention_mask);
  add("labels", t.labels);
  return h.hex();
}

// Adds values as an int64 little-endian tensor.
inline void add_int64_tensor(safetensors_writer& w, const std::string& key, const std::vector<std::int64_t>& values,
                             std::vector<std::int64_t> shape) {
  std::vector<std::byte> bytes(values.size() * 8);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto v = static_cast<std::uint64_t>(values[i]);
    for (std::size_t k = 0; k < 8; ++k) bytes[i * 8 + k] = static_cast<std::byte>((v >> (8 * k)) & 0xffu);
  }
  w.add(key, dtype_i64, std::move(shape), bytes);
}

// A safetensors file of the three int64 [N, T] tensors (the layout ModelOpt's runner reads).
inline std::string render_batches(const batch_tensors& t) {
  safetensors_writer w;
  add_int64_tensor(w, "attention_mask", t.attention_mask, {t.rows, t.seq});
  add_int64_tensor(w, "input_ids", t.input_ids, {t.rows, t.seq});
  add_int64_tensor(w, "labels", t.labels, {t.rows, t.seq});
  return w.serialize();
}

// Image-caption batches, which differ in length, as one safetensors file of per-batch tensors:
// "<i>.input_ids", "<i>.attention_mask", "<i>.labels" int64 [b, T] (labels in the reference's form,
// as stack_batches writes them), "<i>.pixel_values" F32 [patches, C·Tp·P·P] and
// "<i>.image_grid_thw" int64 [images, 3] (what ModelOpt's runner reads with --image-batches).
inline std::string render_image_batches(std::span<const io::calib_batch> batches) {
  safetensors_writer w;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const io::calib_batch& b = batches[i];
    const batch_tensors t = stack_batches(std::span<const io::calib_batch>(&b, 1));
    const std::string prefix = std::to_string(i) + ".";
    add_int64_tensor(w, prefix + "input_ids", t.input_ids, {t.rows, t.seq});
    add_int64_tensor(w, prefix + "attention_mask", t.attention_mask, {t.rows, t.seq});
    add_int64_tensor(w, prefix + "labels", t.labels, {t.rows, t.seq});
    w.add(prefix + "pixel_values", {b.vision.rows, b.vision.cols}, std::span<const float>(b.vision.pixel_values));
    std::vector<std::int64_t> grids;
    for (const auto& g : b.vision.grid_thw) grids.insert(grids.end(), g.begin(), g.end());
    add_int64_tensor(w, prefix + "image_grid_thw", grids, {static_cast<std::int64_t>(b.vision.grid_thw.size()), 3});
  }
  return w.serialize();
}

struct result_json_context {
  std::string version = "0.1.0";
  std::string model;  // model dir base name or "builtin"
  std::vector<std::string> formats;  // as given
  double effective_bits_requested = 0.0;
  std::int64_t batch_size = 0;
  std::string data_sha256;
  std::int64_t num_samples = 0;
  std::int64_t seq_len = 0;
  std::int64_t num_batches = 0;
  std::string data;
  std::string attention;
  unsigned threads = 0;
  double model_load_s = 0.0;
  std::int64_t weight_bytes = 0;
  // What ran it: the CPU engine's values by default; a GPU driver names its card, its arithmetic
  // and its peak memory (null on the CPU, which does not track it).
  std::string device = "cpu";
  std::string gpu;  // empty: the key is left out
  std::string precision = "float32";
  std::string dtype = "float32";
  std::optional<std::int64_t> peak_allocated_bytes, peak_reserved_bytes;
};

// The comparison JSON (keys sorted like the ModelOpt runner's json.dump(sort_keys=True); our
// json_writer keeps insertion order, so keys are inserted sorted).
inline std::string render_result_json(const search_space& space, const autoquant_result& r,
                                      const engine_options& options, const result_json_context& c) {
  io::json_writer j;
  const auto num = [&](double v) -> io::json_writer& {
    if (std::isnan(v)) return j.string("NaN");
    if (std::isinf(v)) return j.string(v > 0 ? "Infinity" : "-Infinity");
    return j.number(v);
  };
  j.begin_object();
  j.key("environment").begin_object().key("device").string(c.device);
  if (!c.gpu.empty()) j.key("gpu").string(c.gpu);
  j.key("precision").string(c.precision).key("threads").integer(c.threads).end_object();
  j.key("groups").begin_array();
  for (std::size_t g = 0; g < space.groups.size(); ++g) {
    j.begin_object();
    j.key("chosen").string(std::string(space.candidates[r.chosen[g]].recipe->name));
    j.key("costs").begin_array();
    for (const std::size_t cand : r.choices[g]) j.number(modelopt_cost(space.groups[g].numel, space.candidates[cand].recipe->effective_bits));
    j.end_array();
    j.key("formats").begin_array();
    for (const std::size_t cand : r.choices[g]) j.string(std::string(space.candidates[cand].recipe->name));
    j.end_array();
    std::string name = space.groups[g].name;
    name.resize(name.size() - std::string_view(".quant_recipe").size());
    j.key("name").string(name);
    j.key("raw_scores").begin_array();
    for (const double s : r.raw_scores[g]) num(s);
    j.end_array();
    j.key("scores").begin_array();
    for (const double s : r.scores[g]) num(s);
    j.end_array();
    j.key("tool_formats").begin_array();
    for (const std::size_t cand : r.choices[g]) j.string(space.display(cand, options.custom_names));
    j.end_array();
    j.end_object();
  }
  j.end_array();
  const auto bytes_or_null = [&](const std::optional<std::int64_t>& v) -> io::json_writer& {
    return v ? j.integer(*v) : j.null();
  };
  j.key("memory_bytes").begin_object().key("peak_allocated");
  bytes_or_null(c.peak_allocated_bytes).key("peak_reserved");
  bytes_or_null(c.peak_reserved_bytes).key("weights").integer(c.weight_bytes).end_object();
  std::size_t configurable = 0;
  for (std::size_t g = 0; g < space.groups.size(); ++g) configurable += space.configurable(g) ? 1 : 0;
  j.key("result").begin_object();
  j.key("effective_bits");
  num(r.allocation.effective_bits);
  j.key("is_satisfied").boolean(r.allocation.is_satisfied);
  j.key("num_configurable_groups").integer(static_cast<std::int64_t>(configurable));
  j.key("num_groups").integer(static_cast<std::int64_t>(space.groups.size()));
  j.key("total_score");
  num(r.allocation.total_score);
  j.end_object();
  j.key("run").begin_object();
  j.key("attn_implementation").string(c.attention);
  j.key("batch_size").integer(c.batch_size);
  j.key("bits_mode").string(options.adjust_budget ? "lm" : "model");
  j.key("data").string(c.data);
  j.key("data_sha256").string(c.data_sha256);
  j.key("disabled_layers").begin_array();
  for (const std::string& p : space.disabled_patterns) j.string(p);
  j.end_array();
  j.key("dtype").string(c.dtype);
  j.key("effective_bits_constraint");
  num(r.budget_bits);
  j.key("effective_bits_requested");
  num(c.effective_bits_requested);
  j.key("formats").begin_array();
  for (const std::string& f : c.formats) j.string(f);
  j.end_array();
  j.key("method").string(std::string(to_string(options.method)));
  j.key("model").string(c.model);
  j.key("num_batches").integer(c.num_batches);
  j.key("num_calib_steps").integer(r.num_calib_steps);
  j.key("num_samples").integer(c.num_samples);
  j.key("num_score_steps").integer(r.num_score_steps);
  j.key("seq_len").integer(c.seq_len);
  j.key("weight_numel_disabled").integer(space.disabled_params);
  j.key("weight_numel_total").integer(space.total_params);
  j.end_object();
  j.key("schema").string("aq.autoquant.compare/v1");
  j.key("timing_s").begin_object();
  j.key("auto_quantize");
  num(r.timings.calibration + r.timings.scoring + r.timings.search);
  j.key("calibration");
  num(r.timings.calibration);
  if (r.evaluation) {
    j.key("evaluation");
    num(r.timings.evaluation);
  }
  j.key("model_load");
  num(c.model_load_s);
  j.key("scoring");
  num(r.timings.scoring);
  j.key("search");
  num(r.timings.search);
  j.end_object();
  j.key("tool").begin_object().key("name").string("aq").key("version").string(c.version).end_object();
  j.end_object();
  return j.str();
}

}  // namespace aq::autoquant
