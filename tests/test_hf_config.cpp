// config.json -> aq::qwen3_vl::config: the published Qwen3-VL-4B-Instruct config in both rope
// spellings (transformers 4.57 rope_scaling, 5.x rope_parameters), configs written by
// transformers 5.17, defaults, tie_word_embeddings placement, errors naming file and field, and
// the inputs that must be refused: unimplemented settings, overflowing sizes, empty files, FIFOs.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/stat.h>

#include "aq/io/checkpoint/hf_config.hpp"
#include "aq/io/regular_file.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"

namespace test_hf_config {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

const fs::path configs = fs::path(AQ_TEST_FIXTURES) / "configs";

// A minimal valid config; tests splice fields in or out of it.
std::string minimal(const std::string& text_extra = "", const std::string& top_extra = "",
                    const std::string& vision_extra = "") {
  return R"({"model_type":"qwen3_vl",)" + top_extra + R"("text_config":{)" + text_extra +
         R"("vocab_size":100,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,)"
         R"("rope_theta":10000,"rope_scaling":{"rope_type":"default","mrope_section":[2,1,1]}},)"
         R"("vision_config":{)" + vision_extra +
         R"("depth":2,"hidden_size":16,"num_heads":2,"intermediate_size":32,"out_hidden_size":32,"deepstack_visual_indexes":[1]}})";
}

std::string parse_error(const std::string& json) {
  try {
    aq::parse_qwen3_vl_config(json, "config.json");
  } catch (const aq::error& e) {
    return e.what();
  }
  FAIL("config parsed without error: " << json);
  return {};
}

void check_4b(const aq::qwen3_vl::config& c) {
  CHECK(c.text.hidden_size == 2560);
  CHECK(c.text.intermediate_size == 9728);
  CHECK(c.text.num_hidden_layers == 36);
  CHECK(c.text.num_attention_heads == 32);
  CHECK(c.text.num_key_value_heads == 8);
  CHECK(c.text.head_dim == 128);
  CHECK(c.text.vocab_size == 151936);
  CHECK(c.text.rms_norm_eps == 1e-6);
  CHECK(c.text.rope_theta == 5e6);
  CHECK(c.text.mrope_section == std::array<std::int64_t, 3>{24, 20, 20});
  CHECK(c.text.mrope_interleaved);
  CHECK(c.text.hidden_act == "silu");
  CHECK_FALSE(c.text.attention_bias);
  CHECK(c.vision.depth == 24);
  CHECK(c.vision.hidden_size == 1024);
  CHECK(c.vision.num_heads == 16);
  CHECK(c.vision.intermediate_size == 4096);
  CHECK(c.vision.in_channels == 3);
  CHECK(c.vision.patch_size == 16);
  CHECK(c.vision.temporal_patch_size == 2);
  CHECK(c.vision.spatial_merge_size == 2);
  CHECK(c.vision.out_hidden_size == 2560);
  CHECK(c.vision.num_position_embeddings == 2304);
  CHECK(c.vision.deepstack_visual_indexes == std::vector<std::int64_t>{5, 11, 17});
  CHECK(c.vision.hidden_act == "gelu_pytorch_tanh");
  CHECK(c.tie_word_embeddings);
  CHECK(c.image_token_id == 151655);
  CHECK(c.video_token_id == 151656);
  CHECK(c.vision_start_token_id == 151652);
  CHECK(c.vision_end_token_id == 151653);
}

}  // namespace

TEST_CASE("the published Qwen3-VL-4B-Instruct config (rope_theta + rope_scaling) parses to the 4B numbers") {
  check_4b(aq::read_qwen3_vl_config(configs / "qwen3_vl_4b_instruct.json"));
}

TEST_CASE("the transformers 5 spelling (rope_parameters) parses to the same numbers") {
  check_4b(aq::read_qwen3_vl_config(configs / "qwen3_vl_4b_instruct_v5.json"));
}

TEST_CASE("configs saved by transformers 5.17 parse (tied and untied tiny models)") {
  const auto tied = aq::read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied");  // a directory
  CHECK(tied.tie_word_embeddings);
  CHECK(tied.text.hidden_size == 48);
  CHECK(tied.text.head_dim == 16);
  CHECK(tied.text.mrope_section == std::array<std::int64_t, 3>{4, 2, 2});
  CHECK(tied.vision.deepstack_visual_indexes == std::vector<std::int64_t>{1});
  CHECK(tied.image_token_id == 208);
  const auto untied = aq::read_qwen3_vl_config(fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_untied" / "config.json");
  CHECK_FALSE(untied.tie_word_embeddings);
  CHECK(untied.text.rope_theta == 5e6);
  CHECK(untied.text.head_dim == 32);
}

TEST_CASE("optional fields take the transformers defaults") {
  const auto c = aq::parse_qwen3_vl_config(minimal(), "config.json");
  CHECK(c.text.head_dim == 8);  // hidden_size / num_attention_heads
  CHECK(c.text.num_key_value_heads == 4);
  CHECK(c.text.rms_norm_eps == 1e-6);
  CHECK(c.vision.patch_size == 16);
  CHECK(c.vision.num_position_embeddings == 2304);
  CHECK(c.image_token_id == 151655);
  CHECK_FALSE(c.tie_word_embeddings);  // both classes default to untied
  // Without rope_scaling the model code's M-RoPE sections apply: they must fit head_dim/2.
  CHECK(parse_error(R"({"model_type":"qwen3_vl","text_config":{"vocab_size":100,"hidden_size":32,"intermediate_size":64,)"
                    R"("num_hidden_layers":2,"num_attention_heads":4,"rope_theta":10000},"vision_config":{"depth":2,)"
                    R"("hidden_size":16,"num_heads":2,"intermediate_size":32,"out_hidden_size":32,"deepstack_visual_indexes":[]}})") ==
        "config.json: text_config.mrope_section: sums to 64, expected head_dim/2 = 4");
}

TEST_CASE("tie_word_embeddings is read at the top level or in text_config, and must agree") {
  CHECK(aq::parse_qwen3_vl_config(minimal("", R"("tie_word_embeddings":true,)"), "c").tie_word_embeddings);
  CHECK(aq::parse_qwen3_vl_config(minimal(R"("tie_word_embeddings":true,)"), "c").tie_word_embeddings);
  CHECK_FALSE(aq::parse_qwen3_vl_config(minimal(R"("tie_word_embeddings":false,)", R"("tie_word_embeddings":false,)"), "c")
                  .tie_word_embeddings);
  CHECK(parse_error(minimal(R"("tie_word_embeddings":false,)", R"("tie_word_embeddings":true,)")) ==
        "config.json: tie_word_embeddings: true disagrees with text_config.tie_word_embeddings false");
}

TEST_CASE("missing and malformed fields are errors naming the file and the field") {
  const std::string base = minimal();
  const auto without = [&](const std::string& field) {
    std::string json = base;
    const std::size_t at = json.find(field);
    REQUIRE(at != std::string::npos);
    json.erase(at, field.size());
    return json;
  };
  CHECK(parse_error(without(R"("hidden_size":32,)")) == "config.json: text_config.hidden_size: missing");
  CHECK(parse_error(without(R"("depth":2,)")) == "config.json: vision_config.depth: missing");
  CHECK(parse_error(without(R"("rope_theta":10000,)")) == "config.json: text_config.rope_theta: missing");
  CHECK(parse_error(without(R"("model_type":"qwen3_vl",)")) == "config.json: model_type: missing");
  CHECK(parse_error(R"({"model_type":"qwen3_vl"})") == "config.json: text_config: missing");
  CHECK(parse_error(R"({"model_type":"qwen2_5_vl"})") == "config.json: model_type: \"qwen2_5_vl\" not supported (qwen3_vl)");
  CHECK(parse_error(minimal(R"("num_key_value_heads":3,)")) ==
        "config.json: text_config.num_key_value_heads: 3 does not divide num_attention_heads 4");
  CHECK(parse_error(minimal(R"("head_dim":"8",)")) == "config.json: text_config.head_dim: is a string, expected an integer");
  CHECK(parse_error(minimal(R"("head_dim":0,)")) == "config.json: text_config.head_dim: must be positive, got 0");
  CHECK(parse_error(minimal("", R"("text_config":{"a":1},)")).find("config.json: ") == 0);
  CHECK(parse_error(minimal("", "", R"("patch_size":16.5,)")) ==
        "config.json: vision_config.patch_size: is a floating-point number, expected an integer");
  CHECK(parse_error("{\"model_type\": ") .find("config.json: not valid JSON") == 0);
  std::string yarn = base;
  const std::string default_type = R"("rope_type":"default")";
  yarn.replace(yarn.find(default_type), default_type.size(), R"("rope_type":"yarn")");
  CHECK(parse_error(yarn) == "config.json: text_config.rope_scaling.rope_type: \"yarn\" not supported (default)");
  std::string deepstack = base;
  const std::string one_index = R"("deepstack_visual_indexes":[1])";
  deepstack.replace(deepstack.find(one_index), one_index.size(), R"("deepstack_visual_indexes":[2])");
  CHECK(parse_error(deepstack) == "config.json: vision_config.deepstack_visual_indexes: entry 2 outside the blocks 0..1");
  CHECK_THROWS_WITH_AS(aq::read_qwen3_vl_config(configs / "absent.json"),
                       ((configs / "absent.json").string() + ": cannot open: No such file or directory").c_str(), aq::error);
}

TEST_CASE("the two published spellings give identical configs field by field") {
  const std::string v4 = read_text(configs / "qwen3_vl_4b_instruct.json");
  const std::string v5 = read_text(configs / "qwen3_vl_4b_instruct_v5.json");
  CHECK(v4.find("rope_scaling") != std::string::npos);
  CHECK(v5.find("rope_parameters") != std::string::npos);
  const auto a = aq::parse_qwen3_vl_config(v4, "v4");
  const auto b = aq::parse_qwen3_vl_config(v5, "v5");
  CHECK(a.text.rope_theta == b.text.rope_theta);
  CHECK(a.text.mrope_section == b.text.mrope_section);
  CHECK(a.text.mrope_interleaved == b.text.mrope_interleaved);
  CHECK(a.vision.deepstack_visual_indexes == b.vision.deepstack_visual_indexes);
}

namespace {

std::string with_field(const std::string& json, const std::string& field, const std::string& value) {
  // Replaces "field":<old value> (old value without commas or braces) by "field":value.
  const std::string key = "\"" + field + "\":";
  const std::size_t at = json.find(key);
  REQUIRE(at != std::string::npos);
  const std::size_t begin = at + key.size();
  const std::size_t end = json.find_first_of(",}", begin);
  return json.substr(0, begin) + value + json.substr(end);
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("aq_test_hf_config_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("settings aq does not implement are refused by name, expected vs actual") {
  CHECK(parse_error(minimal(R"("hidden_act":"no_such_activation",)")) ==
        "config.json: text_config.hidden_act: \"no_such_activation\" not supported (silu)");
  CHECK(parse_error(minimal(R"("hidden_act":"gelu",)")) == "config.json: text_config.hidden_act: \"gelu\" not supported (silu)");
  CHECK(parse_error(minimal(R"("attention_bias":true,)")) ==
        "config.json: text_config.attention_bias: true not supported (false: aq's q/k/v/o projections have no bias)");
  CHECK(parse_error(minimal("", "", R"("hidden_act":"gelu",)")) ==
        "config.json: vision_config.hidden_act: \"gelu\" not supported (gelu_pytorch_tanh)");
  CHECK(parse_error(minimal("", R"("quantization_config":{"quant_method":"fp8"},)")) ==
        "config.json: quantization_config: present, not supported (aq reads unquantized BF16/F16/F32 checkpoints)");
  CHECK(parse_error(minimal("", "", R"("num_position_embeddings":2400,)")) ==
        "config.json: vision_config.num_position_embeddings: 2400 is not a square (the embeddings form a G x G grid)");
  CHECK(parse_error(with_field(minimal(), "out_hidden_size", "48")) ==
        "config.json: vision_config.out_hidden_size: 48, expected text_config.hidden_size 32");
  // The implemented values, explicit, and fields that do not change the math, are accepted.
  const aq::qwen3_vl::config accepted = aq::parse_qwen3_vl_config(
      minimal(R"("hidden_act":"silu","attention_bias":false,"attention_dropout":0.0,"use_cache":true,"max_position_embeddings":128,)",
              R"("architectures":["Qwen3VLForConditionalGeneration"],)", R"("hidden_act":"gelu_pytorch_tanh","initializer_range":0.02,)"),
      "config.json");
  CHECK(accepted.text.max_position_embeddings == 128);  // bounds --seq-len before any work
  CHECK(aq::parse_qwen3_vl_config(minimal(), "config.json").text.max_position_embeddings == 0);  // not stated: no bound
  CHECK(parse_error(minimal(R"("max_position_embeddings":0,)")) ==
        "config.json: text_config.max_position_embeddings: must be positive, got 0");

  SUBCASE("mrope_interleaved false, in both rope spellings") {
    std::string v4 = minimal();
    v4.replace(v4.find(R"("mrope_section")"), 0, R"("mrope_interleaved":false,)");
    CHECK(parse_error(v4) == "config.json: text_config.rope_scaling.mrope_interleaved: false not supported "
                             "(true: aq implements Qwen3-VL's interleaved M-RoPE only)");
    std::string v5 = read_text(configs / "qwen3_vl_4b_instruct_v5.json");
    const std::size_t at = v5.find("\"mrope_interleaved\": true");
    REQUIRE(at != std::string::npos);
    v5.replace(at, 25, "\"mrope_interleaved\": false");
    CHECK(parse_error(v5) == "config.json: text_config.rope_parameters.mrope_interleaved: false not supported "
                             "(true: aq implements Qwen3-VL's interleaved M-RoPE only)");
  }
  SUBCASE("a config built in code is refused by the loaders' check") {
    auto c = aq::parse_qwen3_vl_config(minimal(), "config.json");
    CHECK_NOTHROW(aq::qwen3_vl::check_implemented(c));
    c.text.attention_bias = true;
    CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_implemented(c),
                         "qwen3_vl config: text_config.attention_bias: true not supported (false)", aq::error);
    c.text.attention_bias = false;
    c.text.mrope_interleaved = false;
    CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_implemented(c),
                         "qwen3_vl config: text_config.mrope_interleaved: false not supported (true)", aq::error);
    c.text.mrope_interleaved = true;
    c.vision.hidden_act = "relu";
    CHECK_THROWS_WITH_AS(aq::qwen3_vl::check_implemented(c),
                         "qwen3_vl config: vision_config.hidden_act: \"relu\" not supported (gelu_pytorch_tanh)", aq::error);
  }
}

TEST_CASE("integers beyond int64 and sizes that overflow are refused naming the field") {
  const std::string base = minimal();
  CHECK(parse_error(with_field(base, "vocab_size", "9223372036854775808")) ==
        "config.json: text_config.vocab_size: 9223372036854775808 out of range for int64 (at most 9223372036854775807)");
  CHECK(parse_error(with_field(base, "vocab_size", "18446744073709551615")) ==
        "config.json: text_config.vocab_size: 18446744073709551615 out of range for int64 (at most 9223372036854775807)");
  // Widths, vocabulary and patch sizes beyond 2^24 are refused by name before any product.
  CHECK(parse_error(with_field(base, "vocab_size", "4611686018427387904")) ==
        "config.json: text_config.vocab_size: 4611686018427387904 too large (at most 16777216)");
  CHECK(parse_error(with_field(base, "hidden_size", "1099511627776")) ==
        "config.json: text_config.hidden_size: 1099511627776 too large (at most 16777216)");
  CHECK(parse_error(minimal("", "", R"("patch_size":9223372036854775807,)")) ==
        "config.json: vision_config.patch_size: 9223372036854775807 too large (at most 16777216)");
  std::string sections = base;
  sections.replace(sections.find("[2,1,1]"), 7, "[9223372036854775807,9223372036854775807,2]");
  CHECK(parse_error(sections) ==
        "config.json: text_config.rope_scaling.mrope_section: entry 9223372036854775807 outside 0..16777216");
  // Within that bound, sizes are products checked for overflow; the largest factor is named.
  std::string wide = minimal(R"("head_dim":8,)");
  wide = with_field(wide, "hidden_size", "16777216");
  wide = with_field(wide, "intermediate_size", "16777216");
  wide = with_field(wide, "out_hidden_size", "16777216");
  CHECK(parse_error(with_field(wide, "num_hidden_layers", "1000000")) ==
        "config.json: text_config.num_hidden_layers: 1000000 too large: the decoder layers' bytes "
        "(1000000 x 3377708444680256) overflows int64");
}

TEST_CASE("layer counts whose per-layer lists cannot fit in memory are refused before anything is built") {
  const std::string base = minimal();
  const std::string layers = parse_error(with_field(base, "num_hidden_layers", "9223372036854775807"));
  CHECK(layers.find("config.json: text_config.num_hidden_layers: 9223372036854775807 layers too many: at most ") == 0);
  CHECK(layers.find("fit the per-layer lists in a quarter of this machine's memory") != std::string::npos);
  std::string depth = base;
  depth.replace(depth.find(R"("depth":2)"), 9, R"("depth":1000000000)");
  CHECK(parse_error(depth).find("config.json: vision_config.depth: 1000000000 blocks too many: at most ") == 0);
  // 100,000 layers are listable: the checkpoint check bounds them (test_qwen3_vl_parameters).
  CHECK(aq::parse_qwen3_vl_config(with_field(base, "num_hidden_layers", "100000"), "c").text.num_hidden_layers == 100000);
}

TEST_CASE("config.json that is empty, a FIFO or a directory is an error, not undefined behaviour or a hang") {
  const fs::path dir = temp_dir("inputs");
  CHECK(parse_error("") == "config.json: empty file");
  { std::ofstream(dir / "config.json").flush(); }
  CHECK_THROWS_WITH_AS(aq::read_qwen3_vl_config(dir), ((dir / "config.json").string() + ": empty file").c_str(), aq::error);
  fs::remove(dir / "config.json");
  REQUIRE(::mkfifo((dir / "config.json").c_str(), 0600) == 0);  // nobody writes: opening it must not wait
  CHECK_THROWS_WITH_AS(aq::read_qwen3_vl_config(dir), ((dir / "config.json").string() + ": not a regular file").c_str(),
                       aq::error);
  fs::remove(dir / "config.json");
  fs::create_directories(dir / "config.json");
  CHECK_THROWS_WITH_AS(aq::read_qwen3_vl_config(dir), ((dir / "config.json").string() + ": not a regular file").c_str(),
                       aq::error);
  CHECK_THROWS_WITH_AS(aq::read_regular_file(dir / "config.json"),
                       ((dir / "config.json").string() + ": not a regular file").c_str(), aq::error);
}

TEST_CASE("config_json_file names a directory's config.json and a file itself") {
  const fs::path dir = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied";
  CHECK(aq::config_json_file(dir) == dir / "config.json");
  CHECK(aq::config_json_file(dir / "config.json") == dir / "config.json");
  CHECK(aq::config_json_file(configs / "absent.json") == configs / "absent.json");  // not a directory: itself
}

}  // namespace test_hf_config
