// aq-export's library and run: int4 packing in both orders, and on a tiny synthetic Qwen3-VL
// checkpoint with an fp8 / int8_w8a8 / w8a16 / w4a16 / none mix, for each layout: the exported
// codes dequantize (code x scale) to aq's fake-quantized weights (tolerances stated below), every
// other tensor is byte-identical, config fields are as docs/export.md says, a refusal writes
// nothing, and a second export is byte-identical.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "aq/core/bf16.hpp"
#include "aq/core/thread_pool.hpp"
#include "aq/export/checkpoint_writer.hpp"
#include "aq/export/export_checkpoint.hpp"
#include "aq/export/int4_packing.hpp"
#include "aq/formats/e2m1.hpp"
#include "aq/formats/e4m3.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/io/json_parser.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"
#include "aq/quant/fake_quantize.hpp"
#include "aq/quant/recipes.hpp"
#include "cli/export_run.hpp"

namespace test_export {

namespace fs = std::filesystem;
using aq::hf_export::checkpoint_layout;

namespace {

// Hidden 128 and intermediate 256 so that every text Linear has an input dim w4a16 can group by 128.
const char* export_config = R"({
  "architectures": ["Qwen3VLForConditionalGeneration"],
  "image_token_id": 157,
  "model_type": "qwen3_vl",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 150, "dtype": "bfloat16",
    "eos_token_id": 151, "head_dim": 32, "hidden_act": "silu", "hidden_size": 128, "initializer_range": 0.02,
    "intermediate_size": 256, "max_position_embeddings": 4096, "model_type": "qwen3_vl_text",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [8, 4, 4], "rope_type": "default"},
    "rope_theta": 5000000, "tie_word_embeddings": false, "use_cache": true, "vocab_size": 160
  },
  "tie_word_embeddings": false,
  "transformers_version": "4.57.0.dev0",
  "video_token_id": 158,
  "vision_config": {
    "deepstack_visual_indexes": [1], "depth": 2, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32,
    "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 48, "model_type": "qwen3_vl",
    "num_heads": 2, "num_position_embeddings": 16, "out_hidden_size": 128, "patch_size": 4,
    "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 156,
  "vision_start_token_id": 155
}
)";

const char* mix_map = R"({
  "model.language_model.layers.0.self_attn.*": "fp8_e4m3",
  "model.language_model.layers.0.mlp.*": "w4a16",
  "model.language_model.layers.1.self_attn.*": "int8_w8a8",
  "model.language_model.layers.1.mlp.down_proj": "w8a16"
})";

const std::string shard1 = "model-00001-of-00002.safetensors";
const std::string shard2 = "model-00002-of-00002.safetensors";

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Deterministic weights with a spread of magnitudes (some rows much larger than others).
std::vector<float> weight_values(std::size_t count, std::uint64_t seed) {
  std::vector<float> values(count);
  std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < count; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double u = static_cast<double>(state >> 11) / 9007199254740992.0;  // [0, 1)
    values[i] = static_cast<float>((u - 0.5) * (1.0 + static_cast<double>((i / 64) % 5)));
  }
  return values;
}

// The scratch folder of this process, removed when the tests end.
fs::path scratch_root() { return fs::temp_directory_path() / ("aq_test_export_" + std::to_string(::getpid())); }

struct scratch_cleanup {
  ~scratch_cleanup() {
    std::error_code ignored;
    fs::remove_all(scratch_root(), ignored);
  }
} cleanup_at_exit;

struct fixture {
  fs::path root, model, recipes, state;
  aq::qwen3_vl::config cfg;
};

// Writes the model (two shards, vision / the rest, bf16), the recipe map and the state of the mix
// (weight amax calibrated from the weights as aq-autoquant does, input amax made up).
fixture make_fixture(const std::string& name, const std::string& map = mix_map) {
  fixture f;
  f.root = scratch_root() / name;
  fs::remove_all(f.root);
  f.model = f.root / "model";
  fs::create_directories(f.model);
  write_text(f.model / "config.json", export_config);
  write_text(f.model / "tokenizer_config.json", "{\"model_max_length\": 4096}\n");
  f.cfg = aq::read_qwen3_vl_config(f.model);
  aq::safetensors_writer first, second;
  std::string weight_map;
  std::uint64_t bytes = 0, seed = 0;
  for (const auto& spec : aq::qwen3_vl::expected_parameters(f.cfg)) {
    const bool vision = spec.name.starts_with("model.visual.");
    (vision ? first : second).add_rounded(spec.name, aq::dtype_bf16, spec.shape, weight_values(spec.numel(), ++seed));
    weight_map +=
        (weight_map.empty() ? "" : ",\n    ") + ("\"" + spec.name + "\": \"" + (vision ? shard1 : shard2) + "\"");
    bytes += static_cast<std::uint64_t>(spec.numel()) * 2;
  }
  first.write(f.model / shard1);
  second.write(f.model / shard2);
  write_text(f.model / "model.safetensors.index.json", "{\n  \"metadata\": {\"total_size\": " + std::to_string(bytes) +
                                                           "},\n  \"weight_map\": {\n    " + weight_map + "\n  }\n}\n");
  f.recipes = f.root / "MAP.json";
  write_text(f.recipes, map);

  aq::autoquant::export_options o{f.model.string(), f.recipes.string(), "", "", checkpoint_layout::modelopt};
  const aq::safetensors_checkpoint checkpoint(f.model);
  const aq::autoquant::recipe_assignment given = aq::autoquant::read_recipe_assignment(f.recipes);
  const std::vector<std::string> formats = aq::autoquant::recipe_names(given);
  const auto space = aq::autoquant::make_search_space(aq::qwen3_vl::quantizable_modules(f.cfg), formats, {});
  const std::vector<std::size_t> chosen = aq::autoquant::assign_groups(space, given);
  aq::safetensors_writer state;
  for (std::size_t m = 0; m < space.modules.size(); ++m) {
    const std::string recipe(space.candidates[chosen[space.module_group[m]]].recipe->name);
    if (recipe == "none") continue;
    const std::string& name = space.module_names[m];
    const std::vector<float> w = aq::to_float_vector(checkpoint.at(name + ".weight"));
    const std::int64_t rows = space.modules[m].weight_shape[0], cols = space.modules[m].weight_shape[1];
    std::vector<float> amax;
    std::vector<std::int64_t> shape;
    if (recipe == "fp8_e4m3") amax = aq::quant::calibrate_amax<aq::recipes::fp8_e4m3::weight>(w, rows, cols);
    if (recipe == "int8_w8a8" || recipe == "w8a16") {
      amax = aq::quant::calibrate_amax<aq::recipes::int8_w8a8::weight>(w, rows, cols);
      shape = {rows, 1};
    }
    if (recipe == "w4a16") {
      amax = aq::quant::calibrate_amax<aq::recipes::w4a16::weight>(w, rows, cols);
      shape = {static_cast<std::int64_t>(amax.size()), 1};
    }
    if (recipe == "nvfp4") amax = aq::quant::calibrate_amax<aq::recipes::nvfp4::weight>(w, rows, cols);
    state.add(name + ".weight_quantizer._amax", shape, std::span<const float>(amax));
    if (recipe == "fp8_e4m3" || recipe == "int8_w8a8" || recipe == "nvfp4") {
      const float input = 2.0f + 0.25f * static_cast<float>(m % 7);
      state.add(name + ".input_quantizer._amax", {}, std::span<const float>(&input, 1));
    }
  }
  f.state = f.root / "state.safetensors";
  state.write(f.state);
  return f;
}

aq::autoquant::export_options options(const fixture& f, checkpoint_layout layout, const std::string& out) {
  aq::autoquant::export_options o;
  o.model_dir = f.model.string();
  o.recipes = f.recipes.string();
  o.state = f.state.string();
  o.output_dir = (f.root / out).string();
  o.layout = layout;
  return o;
}

std::vector<float> floats_of(const aq::tensor_view& view) {
  if (view.dtype == aq::hf_export::dtype_f8_e4m3) {
    std::vector<float> out;
    for (const std::byte b : view.bytes) out.push_back(aq::formats::e4m3::decode(static_cast<std::uint8_t>(b)));
    return out;
  }
  if (view.dtype == aq::hf_export::dtype_i8) {
    std::vector<float> out;
    for (const std::byte b : view.bytes) out.push_back(static_cast<float>(static_cast<std::int8_t>(b)));
    return out;
  }
  return aq::to_float_vector(view);
}

// Codes as signed integers [rows x cols] from either packing.
std::vector<float> unpack_modelopt_int4(const aq::tensor_view& view, std::int64_t rows, std::int64_t cols) {
  std::vector<float> q(static_cast<std::size_t>(rows * cols));
  for (std::int64_t j = 0; j < rows / 2; ++j) {
    for (std::int64_t k = 0; k < cols; ++k) {
      const auto byte = static_cast<unsigned>(view.bytes[static_cast<std::size_t>(j * cols + k)]);
      const auto nibble = [](unsigned n) {
        return static_cast<float>(n >= 8 ? static_cast<int>(n) - 16 : static_cast<int>(n));
      };
      q[static_cast<std::size_t>(2 * j * cols + k)] = nibble(byte & 0xfu);
      q[static_cast<std::size_t>((2 * j + 1) * cols + k)] = nibble(byte >> 4);
    }
  }
  return q;
}

std::vector<float> unpack_words(const aq::tensor_view& view, std::int64_t rows, std::int64_t cols, int bits) {
  const std::vector<std::int64_t> raw = aq::to_int64_vector(view);
  const std::int64_t per_word = 32 / bits;
  std::vector<float> q(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto word = static_cast<std::uint32_t>(raw[static_cast<std::size_t>(r * (cols / per_word) + c / per_word)]);
      const unsigned u = (word >> (bits * (c % per_word))) & ((1u << bits) - 1u);
      q[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(static_cast<int>(u) - (1 << (bits - 1)));
    }
  }
  return q;
}

// The dequantized export of module `name` (code x scale in fp32) and the slot scale of each element.
struct dequantized {
  std::vector<float> values, step;
};

// NVFP4: e2m1 code x e4m3 block scale x global scale (ModelOpt: weight_scale_2; compressed-tensors:
// divided by weight_global_scale); the step recorded is the block's scale.
dequantized dequantize_nvfp4(const aq::safetensors_checkpoint& out, const aq::hf_export::module_export& m,
                             checkpoint_layout layout) {
  const std::string p = m.name + ".";
  const bool modelopt = layout == checkpoint_layout::modelopt;
  const aq::tensor_view& packed = out.at(p + (modelopt ? "weight" : "weight_packed"));
  const aq::tensor_view& blocks = out.at(p + "weight_scale");
  const float global = modelopt ? aq::to_float_vector(out.at(p + "weight_scale_2"))[0]
                                : 1.0f / aq::to_float_vector(out.at(p + "weight_global_scale"))[0];
  dequantized d;
  for (std::int64_t i = 0; i < m.rows * m.cols; ++i) {
    const auto byte = static_cast<unsigned>(packed.bytes[static_cast<std::size_t>(i / 2)]);
    const unsigned code = i % 2 == 0 ? byte & 0xfu : byte >> 4;
    const float block =
        aq::formats::e4m3::decode(static_cast<std::uint8_t>(blocks.bytes[static_cast<std::size_t>(i / 16)]));
    const float scale = block * global;
    d.values.push_back(aq::formats::e2m1::decode(static_cast<std::uint8_t>(code)) * scale);
    d.step.push_back(scale);
  }
  return d;
}

dequantized dequantize(const aq::safetensors_checkpoint& out, const aq::hf_export::module_export& m,
                       checkpoint_layout layout) {
  if (m.scheme == aq::hf_export::weight_scheme::nvfp4_block16) return dequantize_nvfp4(out, m, layout);
  const std::string p = m.name + ".";
  std::vector<float> q;
  if (layout == checkpoint_layout::modelopt && m.scheme == aq::hf_export::weight_scheme::int4_block128) {
    q = unpack_modelopt_int4(out.at(p + "weight"), m.rows, m.cols);
  } else if (out.find(p + "weight_packed") != nullptr) {
    q = unpack_words(out.at(p + "weight_packed"), m.rows, m.cols,
                     m.scheme == aq::hf_export::weight_scheme::int4_block128 ? 4 : 8);
  } else {
    q = floats_of(out.at(p + "weight"));
  }
  const std::vector<float> scales = aq::to_float_vector(out.at(p + "weight_scale"));
  dequantized d;
  const std::int64_t per_row = static_cast<std::int64_t>(scales.size()) / m.rows;
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t c = 0; c < m.cols; ++c) {
      const float s =
          scales.size() == 1 ? scales[0] : scales[static_cast<std::size_t>(r * per_row + c * per_row / m.cols)];
      d.values.push_back(q[static_cast<std::size_t>(r * m.cols + c)] * s);
      d.step.push_back(s);
    }
  }
  return d;
}

std::vector<float> fake_quantized(const std::vector<float>& w, const aq::hf_export::module_export& m) {
  std::vector<float> out(w.size());
  using namespace aq::recipes;
  if (m.scheme == aq::hf_export::weight_scheme::fp8_tensor) {
    aq::quant::fake_quantize_matrix<fp8_e4m3::weight>(w, out, m.rows, m.cols, m.weight_amax);
  } else if (m.scheme == aq::hf_export::weight_scheme::int8_channel) {
    aq::quant::fake_quantize_matrix<int8_w8a8::weight>(w, out, m.rows, m.cols, m.weight_amax);
  } else if (m.scheme == aq::hf_export::weight_scheme::nvfp4_block16) {
    aq::quant::fake_quantize_matrix<nvfp4::weight>(w, out, m.rows, m.cols, m.weight_amax);
  } else {
    aq::quant::fake_quantize_matrix<w4a16::weight>(w, out, m.rows, m.cols, m.weight_amax);
  }
  return out;
}

}  // namespace

TEST_CASE("a streamed shard: serialize_safetensors' bytes in any write order, from several threads") {
  const fs::path dir = fs::temp_directory_path() / ("aq_shard_file_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Mixed widths, so the data area is reordered (widest first) against the sorted header.
  std::vector<aq::hf_export::output_tensor> tensors;
  for (int i = 0; i < 24; ++i) {
    const aq::dtype type = i % 3 == 0 ? aq::dtype_f32 : i % 3 == 1 ? aq::hf_export::dtype_u8 : aq::dtype_bf16;
    const std::int64_t rows = 1 + i % 5, cols = 3 + i;
    std::vector<std::byte> bytes(static_cast<std::size_t>(rows * cols) * type.size);
    for (std::size_t b = 0; b < bytes.size(); ++b) bytes[b] = static_cast<std::byte>((b * 31 + i) & 0xff);
    tensors.push_back({"t." + std::to_string((i * 7) % 24), type, {rows, cols}, std::move(bytes)});
  }
  std::vector<aq::hf_export::tensor_spec> specs;
  std::vector<aq::detail::serialized_tensor> entries;
  std::map<std::string, const aq::hf_export::output_tensor*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t;
  for (const auto& t : tensors) specs.push_back({t.name, t.type, t.shape});
  for (const auto& [name, t] : by_name) entries.push_back({t->name, t->type, t->shape, t->bytes});
  const std::string expected = aq::detail::serialize_safetensors({{"format", "pt"}}, entries);

  SUBCASE("written backwards on four threads") {
    {
      aq::hf_export::shard_file out(dir / "a.safetensors", specs);
      aq::thread_pool pool(4);
      aq::hf_export::detail::for_each_task(pool, tensors.size(),
                                           [&](std::size_t i) { out.write(tensors[tensors.size() - 1 - i]); });
      out.finish();
      std::uint64_t data = 0;
      for (const auto& t : tensors) data += t.bytes.size();
      CHECK(out.data_bytes() == data);
    }
    CHECK(read_bytes(dir / "a.safetensors") == expected);
  }
  SUBCASE("a wrong size, an unknown name or a second write is refused") {
    aq::hf_export::shard_file out(dir / "b.safetensors", specs);
    auto wrong = tensors[0];
    wrong.bytes.pop_back();
    CHECK_THROWS_WITH_AS(out.write(wrong), doctest::Contains("bytes, got"), aq::error);
    auto unknown = tensors[0];
    unknown.name = "nope";
    CHECK_THROWS_WITH_AS(out.write(unknown), doctest::Contains("not in the shard"), aq::error);
    out.write(tensors[0]);
    CHECK_THROWS_WITH_AS(out.write(tensors[0]), doctest::Contains("written twice"), aq::error);
  }
  SUBCASE("a shard left unfinished is removed; finish() refuses a missing tensor") {
    {
      aq::hf_export::shard_file out(dir / "c.safetensors", specs);
      out.write(tensors[1]);
      CHECK(fs::exists(dir / "c.safetensors"));
      CHECK_THROWS_WITH_AS(out.finish(), doctest::Contains("was never written"), aq::error);
    }
    CHECK_FALSE(fs::exists(dir / "c.safetensors"));
  }
  SUBCASE("a failing task's error reaches the caller, and every task runs once otherwise") {
    aq::thread_pool pool(3);
    CHECK_THROWS_WITH_AS(aq::hf_export::detail::for_each_task(pool, 1000,
                                                              [&](std::size_t i) {
                                                                if (i == 5) throw aq::error("task 5 failed");
                                                              }),
                         "task 5 failed", aq::error);
    std::vector<std::atomic<int>> runs(1000);
    aq::hf_export::detail::for_each_task(pool, runs.size(), [&](std::size_t i) { ++runs[i]; });
    CHECK(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& r) { return r.load() == 1; }));
  }
  fs::remove_all(dir);
}

TEST_CASE("int4 packing: two output rows per byte (ModelOpt), eight input columns per int32 (compressed-tensors)") {
  const std::vector<std::int8_t> codes{1, -1, 2, -8, 7, 0, -3, 5};  // [4 x 2]
  CHECK(aq::hf_export::pack_int4_output_pairs(codes, 4, 2) == std::vector<std::uint8_t>{0x21, 0x8f, 0xd7, 0x50});
  CHECK_THROWS_WITH(aq::hf_export::pack_int4_output_pairs(std::vector<std::int8_t>(6), 3, 2),
                    "int4 packing: 3 output rows, expected an even count");

  const std::vector<std::int8_t> rows{0, 1, 2, 3, -1, -8, 7, -4,  // [2 x 8]
                                      0, 0, 0, 0, 0,  0,  0, 7};
  const std::vector<std::int32_t> words = aq::hf_export::pack_input_words<4>(rows, 2, 8);
  CHECK(words == std::vector<std::int32_t>{0x4f07ba98, static_cast<std::int32_t>(0xf8888888u)});
  const std::vector<std::int8_t> bytes{-128, -1, 0, 127};
  CHECK(aq::hf_export::pack_input_words<8>(bytes, 1, 4) ==
        std::vector<std::int32_t>{static_cast<std::int32_t>(0xff807f00u)});
  CHECK_THROWS(aq::hf_export::pack_input_words<4>(std::vector<std::int8_t>(4), 1, 4));
}

TEST_CASE("nvfp4 codes: e2m1 round to nearest even under e4m3 block scales, two per byte") {
  // Global amax 6 * 448: global scale 1. Block 1 holds the e2m1 grid (block amax 6, scale 1);
  // block 2 the ties 0.25, 0.75, 2.5, 5 (to 0, 1, 2, 4) doubled under its scale 2 (amax 12 -> 2).
  std::vector<float> w{0,    0.5f, 1, 1.5f, 2,     3,     4,  6,   -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6,
                       0.5f, 1.5f, 5, 10,   -0.5f, -1.5f, -5, -10, 12,    0,     0,  0,     0,  0,  0,  -12};
  const aq::hf_export::nvfp4_weight q = aq::hf_export::nvfp4_codes(w, 1, 32, 6.0f * 448.0f);
  CHECK(q.global_scale == 1.0f);
  CHECK(q.block_scales == std::vector<std::uint8_t>{aq::formats::e4m3::encode(1.0f), aq::formats::e4m3::encode(2.0f)});
  CHECK(q.packed == std::vector<std::uint8_t>{0x10, 0x32, 0x54, 0x76, 0x90, 0xba, 0xdc, 0xfe, 0x20, 0x64, 0xa8, 0xec,
                                              0x07, 0x00, 0x00, 0xf0});
}

TEST_CASE("export round trip, for each layout") {
  for (const checkpoint_layout layout : {checkpoint_layout::modelopt, checkpoint_layout::compressed_tensors}) {
    CAPTURE(aq::hf_export::layout_name(layout));
    const fixture f = make_fixture(std::string(aq::hf_export::layout_name(layout)));
    const aq::autoquant::export_options o = options(f, layout, "out");
    aq::autoquant::run_export(o);
    const aq::hf_export::export_plan plan = aq::autoquant::plan_export(o, f.cfg);
    REQUIRE(plan.quantized.size() == 12);  // q k v o fp8, gate up down w4a16, q k v o int8, down w8a16
    const aq::safetensors_checkpoint in(f.model);
    const aq::safetensors_checkpoint out(o.output_dir, aq::hf_export::any_safetensors_dtype);

    SUBCASE("shards mirror the input's, the index lists every tensor") {
      CHECK(fs::exists(fs::path(o.output_dir) / shard1));
      CHECK(fs::exists(fs::path(o.output_dir) / shard2));
      CHECK(out.sharded());
      CHECK(fs::exists(fs::path(o.output_dir) / "tokenizer_config.json"));
      CHECK(fs::exists(fs::path(o.output_dir) / "hf_quant_config.json") == (layout == checkpoint_layout::modelopt));
      CHECK_FALSE(fs::exists(fs::path(o.output_dir + ".tmp." + std::to_string(::getpid()))));
    }

    SUBCASE("every tensor that is not a quantized weight is copied byte for byte") {
      std::size_t copied = 0;
      for (const aq::tensor_view& view : in.tensors()) {
        if (plan.for_weight(view.name) != nullptr) continue;
        const aq::tensor_view& o_view = out.at(view.name);
        CHECK(o_view.dtype == view.dtype);
        CHECK(std::vector<std::int64_t>(o_view.shape.begin(), o_view.shape.end()) ==
              std::vector<std::int64_t>(view.shape.begin(), view.shape.end()));
        CHECK(std::equal(view.bytes.begin(), view.bytes.end(), o_view.bytes.begin(), o_view.bytes.end()));
        ++copied;
      }
      CHECK(copied + plan.quantized.size() == in.tensors().size());
    }

    SUBCASE("codes x scales dequantize to aq's fake-quantized weights") {
      for (const aq::hf_export::module_export& m : plan.quantized) {
        CAPTURE(m.name);
        const std::vector<float> w = aq::to_float_vector(in.at(m.name + ".weight"));
        const dequantized d = dequantize(out, m, layout);
        // aq's fake quantization with the calibrated amax (ModelOpt: fused groups share it).
        const std::vector<float> fake = fake_quantized(w, m);
        REQUIRE(d.values.size() == fake.size());
        std::size_t off_by_a_step = 0;
        for (std::size_t i = 0; i < fake.size(); ++i) {
          const float diff = std::fabs(d.values[i] - fake[i]);
          // Same code: the sides differ only in how the scale is applied (export: code * scale;
          // aq: code / (1 / scale), or with ModelOpt's amax/bound vs bound/amax): 2^-21 relative.
          const float same_code = std::fabs(fake[i]) * 0x1p-21f;
          if (diff <= same_code) continue;
          // Otherwise the quotient lay at a rounding boundary and the codes are neighbours.
          ++off_by_a_step;
          const float step = m.scheme == aq::hf_export::weight_scheme::fp8_tensor
                                 ? std::fmax(std::fabs(fake[i]) * 0.125f, d.step[i] * 0x1p-9f)
                                 : d.step[i];
          CHECK(diff <= step * 1.0001f + same_code);
        }
        // compressed-tensors stores the fake quantizer's own codes: never a step apart, and fp8
        // bit for bit (code * 1/s is how aq's fp8 fake quantization dequantizes).
        // ModelOpt's export divides by amax·fp32(1/bound) instead, so rare boundary cases differ:
        // the scale is an ulp from the fake quantization's 1/(bound/amax) in some slots (measured:
        // up to 0.23% of the elements), and for fp8 torch divides the bf16 weight by the 0-d fp32
        // scale in bf16, which lands on an e4m3 tie for about 1/16 of the values (then
        // round-to-even may pick the other neighbour than aq's fp32 product).
        const double share = static_cast<double>(off_by_a_step) / static_cast<double>(fake.size());
        if (layout == checkpoint_layout::compressed_tensors) {
          CHECK(off_by_a_step == 0);
          if (m.scheme == aq::hf_export::weight_scheme::fp8_tensor) CHECK(d.values == fake);
        } else {
          CHECK(share <= (m.scheme == aq::hf_export::weight_scheme::fp8_tensor ? 0.08 : 0.005));
        }
        MESSAGE(m.name << ": " << off_by_a_step << " of " << fake.size() << " elements one step apart");
      }
    }

    SUBCASE("config fields") {
      simdjson::dom::parser parser;
      const std::string config = read_bytes(fs::path(o.output_dir) / "config.json");
      const simdjson::dom::element root = parser.parse(config);
      const simdjson::dom::element q = root["quantization_config"];
      CHECK(std::string_view(root["model_type"]) == "qwen3_vl");
      if (layout == checkpoint_layout::modelopt) {
        CHECK(std::string_view(q["quant_method"]) == "modelopt");
        CHECK(std::string_view(q["quant_algo"]) == "MIXED_PRECISION");
        CHECK(q["quantized_layers"].error() == simdjson::NO_SUCH_FIELD);  // hf_quant_config.json only
        CHECK(std::string_view(simdjson::dom::array(q["ignore"]).at(0)) == "lm_head");
        CHECK(config.starts_with("{\n    \"architectures\": [\n        \"Qwen3VLForConditionalGeneration\"\n    ],"));
        simdjson::dom::parser hf_parser;
        const std::string hf = read_bytes(fs::path(o.output_dir) / "hf_quant_config.json");
        const simdjson::dom::element h = hf_parser.parse(hf)["quantization"];
        CHECK(std::string_view(h["quant_algo"]) == "MIXED_PRECISION");
        CHECK(h["kv_cache_quant_algo"].is_null());
        const auto layers = h["quantized_layers"];
        CHECK(std::string_view(layers["model.language_model.layers.0.self_attn.q_proj"]["quant_algo"]) == "FP8");
        CHECK(std::string_view(layers["model.language_model.layers.1.self_attn.o_proj"]["quant_algo"]) ==
              "W8A8_SQ_PER_CHANNEL");
        CHECK(std::string_view(layers["model.language_model.layers.1.mlp.down_proj"]["quant_algo"]) == "W8A16");
        CHECK(std::int64_t(layers["model.language_model.layers.0.mlp.down_proj"]["group_size"]) == 128);
        CHECK(simdjson::dom::object(layers).size() == 12);
        // fp8 weights of the fused q/k/v share one scale, and the group one input scale.
        const float q_scale =
            aq::to_float_vector(out.at("model.language_model.layers.0.self_attn.q_proj.weight_scale"))[0];
        const float k_scale =
            aq::to_float_vector(out.at("model.language_model.layers.0.self_attn.k_proj.weight_scale"))[0];
        CHECK(q_scale == k_scale);
        CHECK(out.at("model.language_model.layers.0.self_attn.q_proj.weight_scale").shape.empty());
        CHECK(out.at("model.language_model.layers.0.self_attn.q_proj.input_scale").dtype == aq::dtype_f32);
        CHECK(out.at("model.language_model.layers.0.mlp.gate_proj.weight").dtype == aq::hf_export::dtype_u8);
        CHECK(out.find("model.language_model.layers.1.mlp.down_proj.input_scale") == nullptr);
      } else {
        CHECK(std::string_view(q["quant_method"]) == "compressed-tensors");
        CHECK(std::string_view(q["format"]) == "mixed-precision");
        CHECK(std::string_view(q["quantization_status"]) == "compressed");
        const auto groups = simdjson::dom::object(q["config_groups"]);
        CHECK(groups.size() == 4);
        CHECK(std::string_view(q["config_groups"]["group_0"]["format"]) == "float-quantized");
        CHECK(std::string_view(q["config_groups"]["group_1"]["format"]) == "pack-quantized");
        CHECK(std::int64_t(q["config_groups"]["group_1"]["weights"]["group_size"]) == 128);
        CHECK(std::string_view(q["config_groups"]["group_2"]["format"]) == "int-quantized");
        CHECK(std::string_view(q["config_groups"]["group_2"]["weights"]["strategy"]) == "channel");
        CHECK(q["config_groups"]["group_3"]["input_activations"].is_null());
        CHECK(simdjson::dom::array(q["config_groups"]["group_0"]["targets"]).size() == 4);
        bool lm_head_ignored = false, vision_ignored = false;
        for (const auto item : simdjson::dom::array(q["ignore"])) {
          lm_head_ignored |= std::string_view(item) == "lm_head";
          vision_ignored |= std::string_view(item).starts_with("model.visual.");
        }
        CHECK(lm_head_ignored);
        CHECK(vision_ignored);
        const aq::tensor_view& packed = out.at("model.language_model.layers.0.mlp.gate_proj.weight_packed");
        CHECK(packed.dtype == aq::dtype_i32);
        CHECK(packed.shape[1] == 128 / 8);
        CHECK(aq::to_int64_vector(out.at("model.language_model.layers.0.mlp.gate_proj.weight_shape")) ==
              std::vector<std::int64_t>{256, 128});
        CHECK(out.at("model.language_model.layers.0.self_attn.q_proj.weight_scale").dtype == aq::dtype_f32);
        CHECK(out.at("model.language_model.layers.0.self_attn.q_proj.input_scale").dtype == aq::dtype_f32);
        CHECK(out.at("model.language_model.layers.1.self_attn.q_proj.weight_scale").shape[1] == 1);
      }
    }

    SUBCASE("a second export is byte-identical") {
      aq::autoquant::run_export(options(f, layout, "again"));
      for (const auto& entry : fs::directory_iterator(o.output_dir)) {
        CAPTURE(entry.path().filename().string());
        CHECK(read_bytes(entry.path()) == read_bytes(f.root / "again" / entry.path().filename()));
      }
    }
  }
}

TEST_CASE("nvfp4 in both layouts") {
  for (const checkpoint_layout layout : {checkpoint_layout::modelopt, checkpoint_layout::compressed_tensors}) {
    CAPTURE(aq::hf_export::layout_name(layout));
    const bool modelopt = layout == checkpoint_layout::modelopt;
    const fixture f = make_fixture("nvfp4_" + std::string(aq::hf_export::layout_name(layout)),
                                   R"({"model.language_model.layers.*.mlp.*": "nvfp4",
                                       "model.language_model.layers.0.self_attn.*": "fp8_e4m3"})");
    const aq::autoquant::export_options o = options(f, layout, "out");
    aq::autoquant::run_export(o);
    const aq::hf_export::export_plan plan = aq::autoquant::plan_export(o, f.cfg);
    const aq::safetensors_checkpoint in(f.model);
    const aq::safetensors_checkpoint out(o.output_dir, aq::hf_export::any_safetensors_dtype);
    for (const aq::hf_export::module_export& m : plan.quantized) {
      if (m.scheme != aq::hf_export::weight_scheme::nvfp4_block16) continue;
      CAPTURE(m.name);
      const aq::tensor_view& packed = out.at(m.name + (modelopt ? ".weight" : ".weight_packed"));
      CHECK(packed.dtype == aq::hf_export::dtype_u8);
      CHECK(packed.shape[1] == m.cols / 2);
      CHECK(out.at(m.name + ".weight_scale").dtype == aq::hf_export::dtype_f8_e4m3);
      CHECK(out.at(m.name + ".weight_scale").shape[1] == m.cols / 16);
      if (modelopt) {
        CHECK(out.at(m.name + ".weight_scale_2").shape.empty());
        CHECK(aq::to_float_vector(out.at(m.name + ".input_scale"))[0] == m.input_amax * (1.0f / 2688.0f));
      } else {
        // compressed-tensors' global scales are the reciprocals: 448 * 6 / amax.
        CHECK(aq::to_float_vector(out.at(m.name + ".weight_global_scale"))[0] == 2688.0f / m.weight_amax.front());
        CHECK(aq::to_float_vector(out.at(m.name + ".input_global_scale"))[0] == 2688.0f / m.input_amax);
        CHECK(out.find(m.name + ".weight") == nullptr);
      }
      const std::vector<float> w = aq::to_float_vector(in.at(m.name + ".weight"));
      const std::vector<float> fake = fake_quantized(w, m);
      const dequantized d = dequantize(out, m, layout);
      // aq's fake quantization follows ModelOpt's Triton kernel, the export NVFP4QTensor (block
      // scales and quotients by tensor division): the same grid value except where the two round
      // a block scale or a quotient to different neighbours.
      std::size_t differ = 0;
      for (std::size_t i = 0; i < fake.size(); ++i) {
        if (std::fabs(d.values[i] - fake[i]) <= std::fabs(fake[i]) * 0x1p-20f) continue;
        ++differ;
        CHECK(std::fabs(d.values[i] - fake[i]) <= std::fmax(std::fabs(fake[i]) * 0.5f, d.step[i] * 0.5f) * 1.0001f);
      }
      CHECK(static_cast<double>(differ) / static_cast<double>(fake.size()) <= 0.002);
      MESSAGE(m.name << ": " << differ << " of " << fake.size() << " elements differ");
    }
    simdjson::dom::parser parser;
    if (modelopt) {
      const std::string hf = read_bytes(fs::path(o.output_dir) / "hf_quant_config.json");
      const simdjson::dom::element layer =
          parser.parse(hf)["quantization"]["quantized_layers"]["model.language_model.layers.1.mlp.up_proj"];
      CHECK(std::string_view(layer["quant_algo"]) == "NVFP4");
      CHECK(std::int64_t(layer["group_size"]) == 16);
    } else {
      const std::string config = read_bytes(fs::path(o.output_dir) / "config.json");
      const simdjson::dom::element q = parser.parse(config)["quantization_config"];
      CHECK(std::string_view(q["format"]) == "mixed-precision");
      const simdjson::dom::element group = q["config_groups"]["group_1"];
      CHECK(std::string_view(group["format"]) == "nvfp4-pack-quantized");
      CHECK(std::string_view(group["weights"]["strategy"]) == "tensor_group");
      CHECK(std::int64_t(group["weights"]["group_size"]) == 16);
      CHECK(std::string_view(group["weights"]["scale_dtype"]) == "torch.float8_e4m3fn");
      CHECK_FALSE(bool(group["weights"]["dynamic"]));
      CHECK(std::string_view(group["input_activations"]["dynamic"]) == "local");
      CHECK(std::string_view(group["input_activations"]["type"]) == "float");
    }
  }
}

TEST_CASE("refusals write nothing") {
  const fixture f = make_fixture("refusals");
  const auto refused = [&](const aq::autoquant::export_options& o, const std::string& message) {
    CHECK_THROWS_WITH(aq::autoquant::run_export(o), doctest::Contains(message.c_str()));
    CHECK_FALSE(fs::exists(o.output_dir));
    for (const auto& entry : fs::directory_iterator(f.root))
      CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
  };
  SUBCASE("a recipe neither layout expresses") {
    write_text(f.recipes, R"({"model.language_model.layers.*.mlp.down_proj": "w4a8"})");
    for (const checkpoint_layout layout : {checkpoint_layout::modelopt, checkpoint_layout::compressed_tensors}) {
      refused(options(f, layout, "out"),
              "recipe 'w4a8' cannot be exported (integer weights with low-bit activations have no");
      refused(options(f, layout, "out"),
              "used by model.language_model.layers.0.mlp.down_proj, "
              "model.language_model.layers.1.mlp.down_proj");
    }
  }
  SUBCASE("nvfp4 weights with fp8 inputs") {
    write_text(f.recipes, R"({"model.language_model.layers.0.mlp.*": "w4a8_nvfp4_fp8"})");
    refused(options(f, checkpoint_layout::compressed_tensors, "out"),
            "recipe 'w4a8_nvfp4_fp8' cannot be exported (NVFP4 weights with fp8 inputs are not exported yet");
  }
  SUBCASE("a state without an amax the mix needs") {
    aq::safetensors_writer empty;
    const float one = 1.0f;
    empty.add("unrelated", {}, std::span<const float>(&one, 1));
    empty.write(f.state);
    refused(options(f, checkpoint_layout::modelopt, "out"),
            "model.language_model.layers.0.self_attn.q_proj.weight_quantizer._amax is missing (the mix needs it)");
  }
  SUBCASE("a NaN amax") {
    aq::safetensors_writer state;
    const aq::safetensors_file old(f.state, aq::readable_dtypes);
    for (const aq::tensor_view& view : old.tensors()) {
      std::vector<float> values = aq::to_float_vector(view);
      if (view.name == "model.language_model.layers.1.self_attn.v_proj.input_quantizer._amax") values[0] = NAN;
      state.add(view.name, {view.shape.begin(), view.shape.end()}, std::span<const float>(values));
    }
    state.write(f.state);
    refused(options(f, checkpoint_layout::compressed_tensors, "out"),
            "v_proj.input_quantizer._amax holds nan; an amax must be finite and >= 0");
  }
  SUBCASE("one module of a fused group with another recipe") {
    write_text(f.recipes, R"({"model.language_model.layers.0.self_attn.*": "fp8_e4m3",
                              "model.language_model.layers.0.self_attn.k_proj": "int8_w8a8"})");
    refused(options(f, checkpoint_layout::modelopt, "out"), "takes one recipe for all its modules");
  }
  SUBCASE("an output folder that cannot be created") {
    write_text(f.root / "a_file", "x");
    CHECK_THROWS(aq::autoquant::run_export(options(f, checkpoint_layout::modelopt, "a_file/out")));
    CHECK(read_bytes(f.root / "a_file") == "x");
  }
}

}  // namespace test_export
