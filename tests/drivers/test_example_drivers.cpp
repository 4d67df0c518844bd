// The example drivers run as a user runs them: aq-inspect on a synthetic Qwen3-VL checkpoint that
// this test writes in the real layout (config.json in the published spelling, two shards +
// model.safetensors.index.json, every tensor name and shape of the architecture), and on broken
// copies; aq-tokenize on files and standard input against Hugging Face tokenizers' ids; aq-logits
// on the tiny transformers fixtures (text against the reference logits, images placed in the ids);
// aq-autoquant on the built-in default and on a checkpoint, its outputs published as one set.
// Built only with the examples (tests/CMakeLists.txt passes the executables' paths).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <simdjson.h>

#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/parameters.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path work = fs::temp_directory_path() / "aq_test_example_drivers";

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  REQUIRE_MESSAGE(out.good(), p.string());
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `exe args` through the shell, standard input from `input` (or /dev/null).
run_result run(const std::string& exe, const std::vector<std::string>& args, const std::string& input = "/dev/null") {
  std::string command = quoted(exe);
  for (const auto& a : args) {
    command += ' ';
    command += quoted(a);
  }
  const fs::path out = work / "stdout.txt", err = work / "stderr.txt";
  command += " <" + quoted(input) + " >" + quoted(out.string()) + " 2>" + quoted(err.string());
  const int status = std::system(command.c_str());
  run_result r;
  REQUIRE(status != -1);
  REQUIRE(WIFEXITED(status));
  r.exit_code = WEXITSTATUS(status);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

std::size_t line_count(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

std::string with_commas(std::int64_t v) {
  std::string digits = std::to_string(v), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A tiny Qwen3-VL, untied, in the spelling of the published configs (rope_theta + rope_scaling).
const char* tiny_config = R"({
  "architectures": ["Qwen3VLForConditionalGeneration"],
  "image_token_id": 157,
  "model_type": "qwen3_vl",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 150, "dtype": "bfloat16",
    "eos_token_id": 151, "head_dim": 16, "hidden_act": "silu", "hidden_size": 48, "initializer_range": 0.02,
    "intermediate_size": 80, "max_position_embeddings": 4096, "model_type": "qwen3_vl_text",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [4, 2, 2], "rope_type": "default"},
    "rope_theta": 5000000, "tie_word_embeddings": false, "use_cache": true, "vocab_size": 160
  },
  "tie_word_embeddings": false,
  "transformers_version": "4.57.0.dev0",
  "video_token_id": 158,
  "vision_config": {
    "deepstack_visual_indexes": [1], "depth": 2, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32,
    "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 48, "model_type": "qwen3_vl",
    "num_heads": 2, "num_position_embeddings": 16, "out_hidden_size": 48, "patch_size": 4,
    "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 156,
  "vision_start_token_id": 155
}
)";

const std::string shard1 = "model-00001-of-00002.safetensors";
const std::string shard2 = "model-00002-of-00002.safetensors";

// What the synthetic checkpoint holds, summed from the tensors written (not from aq's counts).
struct written {
  std::size_t tensors = 0;
  std::int64_t vision = 0, text = 0, lm_head = 0;
  std::uint64_t bytes = 0;
  std::map<std::string, std::vector<std::int64_t>> shapes;
};

// Writes config.json, the two shards (vision tower first, as transformers splits by size) and
// the index into `dir`. Values are a deterministic ramp; the binding only looks at names/shapes.
written write_tiny_checkpoint(const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_text(dir / "config.json", tiny_config);
  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(dir);
  written w;
  aq::safetensors_writer first, second;
  std::string weight_map;
  for (const auto& spec : aq::qwen3_vl::expected_parameters(cfg)) {
    std::vector<float> values(static_cast<std::size_t>(spec.numel()));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 17) / 16.0f - 0.5f;
    const bool vision = spec.name.starts_with("model.visual.");
    (vision ? first : second).add_rounded(spec.name, aq::dtype_bf16, spec.shape, values);
    weight_map += (weight_map.empty() ? "" : ",\n    ") + std::string("\"") + spec.name + "\": \"" +
                  (vision ? shard1 : shard2) + "\"";
    ++w.tensors;
    w.bytes += static_cast<std::uint64_t>(spec.numel()) * 2;
    (vision ? w.vision : spec.name == "lm_head.weight" ? w.lm_head : w.text) += spec.numel();
    w.shapes[spec.name] = spec.shape;
  }
  first.write(dir / shard1);
  second.write(dir / shard2);
  write_text(dir / "model.safetensors.index.json", "{\n  \"metadata\": {\"total_size\": " + std::to_string(w.bytes) +
                                                       "},\n  \"weight_map\": {\n    " + weight_map + "\n  }\n}\n");
  return w;
}

fs::path broken_copy(const fs::path& good, const std::string& name) {
  const fs::path dir = work / name;
  fs::remove_all(dir);
  fs::copy(good, dir);
  return dir;
}

// A failure is reported as exactly one line "aq-inspect: ..." that contains `needle`.
void check_one_line_error(const run_result& r, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.exit_code == 1);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.starts_with("aq-inspect: "));
  CHECK(r.err.find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("aq-inspect reads a synthetic sharded Qwen3-VL checkpoint and lists ModelOpt's modules") {
  fs::create_directories(work);
  const fs::path model = work / "tiny_qwen3_vl";
  const written w = write_tiny_checkpoint(model);
  REQUIRE(w.tensors > 50);

  const run_result r = run(AQ_INSPECT_EXE, {"--model", model.string()});
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const std::string& out = r.out;
  CHECK(out.find("  text:   hidden 48, intermediate 80, layers 2, heads 4, kv heads 2, head_dim 16, vocab 160\n") !=
        std::string::npos);
  CHECK(out.find("rope_theta 5e+06, mrope_section [4, 2, 2] interleaved, act silu") != std::string::npos);
  CHECK(out.find("  vision: depth 2, hidden 32, heads 2, intermediate 48, patch 4, temporal 2, merge 2, out_hidden 48, "
                 "positions 16, deepstack [1], act gelu_pytorch_tanh\n") != std::string::npos);
  CHECK(out.find("  tokens: image 157, video 158, vision_start 155, vision_end 156; tie_word_embeddings false\n") !=
        std::string::npos);

  // Parameter counts equal the sums over the tensors written.
  const auto count_line = [](const char* label, std::int64_t n) {
    std::string number = with_commas(n);
    return std::string("  ") + label + std::string(9 - std::string(label).size(), ' ') +
           std::string(15 - number.size(), ' ') + number;
  };
  CHECK(out.find(count_line("total", w.vision + w.text + w.lm_head) + "\n") != std::string::npos);
  CHECK(out.find(count_line("text", w.text) + "\n") != std::string::npos);
  CHECK(out.find(count_line("vision", w.vision) + "\n") != std::string::npos);
  CHECK(out.find(count_line("lm_head", w.lm_head) + "\n") != std::string::npos);
  CHECK(w.lm_head == 160 * 48);

  CHECK(out.find("checkpoint\n  2 file(s) (sharded), " + std::to_string(w.tensors) + " tensors (BF16 x" +
                 std::to_string(w.tensors) + "), " + with_commas(static_cast<std::int64_t>(w.bytes)) +
                 " bytes; matches config\n") != std::string::npos);

  // Modules: vision 1 patch embed + 2 blocks x 4 + merger 2 + 1 deepstack merger x 2 = 13, text
  // 2 layers x 7 = 14, lm_head 1; groups: each vision module alone (13), per layer qkv, o,
  // gate+up, down (8), lm_head (1). Weights by hand: vision 3072 + 2*(3072+1024+1536+1536)
  // + 2*(16384+6144) = 62464; text 2*(3072+1536+1536+3072+3*3840) = 41472; lm_head 7680.
  CHECK(out.find("quantizable modules: 28, groups: 22, weights 111,616\n") != std::string::npos);
  CHECK(out.find("    model.visual.patch_embed.proj") != std::string::npos);
  CHECK(out.find("Conv3d  [32, 3, 2, 4, 4]\n") != std::string::npos);
  CHECK(out.find("  model.language_model.layers.1.self_attn.q_proj.quant_recipe") != std::string::npos);
  // Every Linear weight of the checkpoint appears under its module name with its stored shape.
  int linears = 0;
  for (const auto& [name, shape] : w.shapes) {
    if (!name.ends_with(".weight") || shape.size() != 2 || name.find("embed") != std::string::npos) continue;
    const std::string module = name.substr(0, name.size() - 7);
    CAPTURE(module);
    const std::size_t at = out.find("    " + module + " ");
    REQUIRE(at != std::string::npos);
    const std::string line = out.substr(at, out.find('\n', at) - at);
    CHECK(line.find(" Linear ") != std::string::npos);
    CHECK(line.ends_with(" " + shape_text(shape)));
    ++linears;
  }
  CHECK(linears == 27);  // 28 modules less the Conv3d patch embedding

  // config.json named instead of the directory, and --no-modules.
  const run_result by_index =
      run(AQ_INSPECT_EXE, {"--model", (model / "config.json").string(), "--no-modules"});
  CHECK(by_index.exit_code == 0);
  CHECK(by_index.out.find("matches config") != std::string::npos);
  CHECK(by_index.out.find("quantizable modules") == std::string::npos);
}

TEST_CASE("aq-inspect fails with one line and exit code 1 on corrupted copies of the checkpoint") {
  fs::create_directories(work);
  const fs::path good = work / "tiny_qwen3_vl_source";
  write_tiny_checkpoint(good);

  SUBCASE("a shard cut in half") {
    const fs::path dir = broken_copy(good, "cut_shard");
    fs::resize_file(dir / shard2, fs::file_size(dir / shard2) / 2);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard2 + ": tensor model.language_model.");
    CHECK(read_text(work / "stderr.txt").find("outside the data area") != std::string::npos);
  }
  SUBCASE("a shard cut inside its header") {
    const fs::path dir = broken_copy(good, "cut_header");
    fs::resize_file(dir / shard2, 64);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard2 + ": header length ");
    fs::resize_file(dir / shard2, 0);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard2 + ": truncated: 0 bytes");
  }
  SUBCASE("a shard whose data area ends early") {
    const fs::path dir = broken_copy(good, "short_data");
    fs::resize_file(dir / shard1, fs::file_size(dir / shard1) - 2);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard1 + ": tensor ");
  }
  SUBCASE("a shard header that is not JSON") {
    const fs::path dir = broken_copy(good, "bad_header");
    std::string bytes = read_text(dir / shard1);
    bytes[8] = '[';
    write_text(dir / shard1, bytes);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard1 + ": header is not valid JSON");
  }
  SUBCASE("an index that is not JSON") {
    const fs::path dir = broken_copy(good, "bad_index");
    write_text(dir / "model.safetensors.index.json", "{\"weight_map\": {");
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), "model.safetensors.index.json: not valid JSON");
  }
  SUBCASE("an index whose weight_map is not a map of shard file names") {
    const fs::path dir = broken_copy(good, "bad_weight_map");
    write_text(dir / "model.safetensors.index.json", R"({"metadata": {}, "weight_map": ["a", "b"]})");
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), "model.safetensors.index.json: weight_map is an array");
    write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"lm_head.weight": 2}})");
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "model.safetensors.index.json: weight_map: tensor lm_head.weight: shard is an integer");
  }
  SUBCASE("an index that misses a tensor of a shard") {
    const fs::path dir = broken_copy(good, "unlisted");
    std::string index = read_text(dir / "model.safetensors.index.json");
    const std::string entry = "\"model.language_model.norm.weight\": \"" + shard2 + "\",\n    ";
    REQUIRE(index.find(entry) != std::string::npos);
    index.erase(index.find(entry), entry.size());
    write_text(dir / "model.safetensors.index.json", index);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "tensor model.language_model.norm.weight of shard " + shard2 + " is not in weight_map");
  }
  SUBCASE("an index naming a shard that is gone") {
    const fs::path dir = broken_copy(good, "missing_shard");
    fs::remove(dir / shard2);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "weight_map: shard " + shard2 + " does not exist");
  }
  SUBCASE("a config of another model type") {
    const fs::path dir = broken_copy(good, "other_model");
    std::string config = tiny_config;
    config.replace(config.find("\"qwen3_vl\""), 10, "\"qwen2_5_vl\"");
    write_text(dir / "config.json", config);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "config.json: model_type: \"qwen2_5_vl\" not supported (qwen3_vl)");
  }
  SUBCASE("a config without a required field") {
    const fs::path dir = broken_copy(good, "no_field");
    std::string config = tiny_config;
    const std::string field = "\"num_hidden_layers\": 2, ";
    config.erase(config.find(field), field.size());
    write_text(dir / "config.json", config);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "config.json: text_config.num_hidden_layers: missing");
  }
  SUBCASE("an empty config.json, and none at all") {
    const fs::path dir = broken_copy(good, "empty_config");
    write_text(dir / "config.json", "");
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), "config.json: empty file");
    fs::remove(dir / "config.json");
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), "config.json: cannot open");
  }
  SUBCASE("settings aq does not implement are refused, never reported as matching") {
    const auto refused = [&](const std::string& name, const std::string& from, const std::string& to,
                             const std::string& needle) {
      const fs::path dir = broken_copy(good, name);
      std::string config = tiny_config;
      REQUIRE(config.find(from) != std::string::npos);
      config.replace(config.find(from), from.size(), to);
      write_text(dir / "config.json", config);
      const run_result r = run(AQ_INSPECT_EXE, {"--model", dir.string()});
      check_one_line_error(r, needle);
      CHECK(r.out.find("matches config") == std::string::npos);
      return dir;
    };
    refused("hidden_act", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"no_such_activation\"",
            "config.json: text_config.hidden_act: \"no_such_activation\" not supported (silu)");
    refused("mrope", "\"mrope_interleaved\": true", "\"mrope_interleaved\": false",
            "config.json: text_config.rope_scaling.mrope_interleaved: false not supported");
    refused("vision_act", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"gelu\"",
            "config.json: vision_config.hidden_act: \"gelu\" not supported (gelu_pytorch_tanh)");
    // attention_bias with the bias tensors really present (a third shard, listed in the index).
    const fs::path dir = refused("attention_bias", "\"attention_bias\": false", "\"attention_bias\": true",
                                 "config.json: text_config.attention_bias: true not supported");
    aq::safetensors_writer biases;
    std::string listed;
    for (int layer = 0; layer < 2; ++layer) {
      for (const auto& [proj, width] : std::vector<std::pair<std::string, std::int64_t>>{
               {"q_proj", 64}, {"k_proj", 32}, {"v_proj", 32}, {"o_proj", 48}}) {
        const std::string name = "model.language_model.layers." + std::to_string(layer) + ".self_attn." + proj + ".bias";
        biases.add_rounded(name, aq::dtype_bf16, {width}, std::vector<float>(static_cast<std::size_t>(width), 0.25f));
        listed += ",\n    \"" + name + "\": \"model-bias.safetensors\"";
      }
    }
    biases.write(dir / "model-bias.safetensors");
    std::string index = read_text(dir / "model.safetensors.index.json");
    index.insert(index.rfind("\n  }"), listed);
    write_text(dir / "model.safetensors.index.json", index);
    const run_result r = run(AQ_INSPECT_EXE, {"--model", dir.string()});
    check_one_line_error(r, "config.json: text_config.attention_bias: true not supported");
    CHECK(r.out.find("matches config") == std::string::npos);
  }
  SUBCASE("100,000 layers: one line, not a list of a million missing tensors") {
    const fs::path dir = broken_copy(good, "many_layers");
    std::string config = tiny_config;
    config.replace(config.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": 100000");
    write_text(dir / "config.json", config);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "checkpoint does not match config.json: the config implies 1100");
    config = tiny_config;
    config.replace(config.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": 9223372036854775807");
    write_text(dir / "config.json", config);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}),
                         "config.json: text_config.num_hidden_layers: 9223372036854775807 layers too many");
  }
  SUBCASE("a FIFO as config.json or as a shard: an error, not a hang") {
    const fs::path dir = broken_copy(good, "fifo");
    fs::remove(dir / shard2);
    REQUIRE(::mkfifo((dir / shard2).c_str(), 0600) == 0);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), shard2 + ": not a regular file");
    fs::remove(dir / "config.json");
    REQUIRE(::mkfifo((dir / "config.json").c_str(), 0600) == 0);
    check_one_line_error(run(AQ_INSPECT_EXE, {"--model", dir.string()}), "config.json: not a regular file");
  }
  SUBCASE("a config that disagrees with the weights: every problem by name, expected vs actual") {
    const fs::path dir = broken_copy(good, "mismatch");
    std::string config = tiny_config;
    config.replace(config.find("\"intermediate_size\": 80"), 23, "\"intermediate_size\": 96");
    write_text(dir / "config.json", config);
    const run_result r = run(AQ_INSPECT_EXE, {"--model", dir.string()});
    CHECK(r.exit_code == 1);
    // One header line, then one line per mis-shaped tensor (gate, up, down of 2 layers).
    CHECK(r.err.find("checkpoint does not match config.json (6 problems)\n") != std::string::npos);
    CHECK(r.err.find("  tensor model.language_model.layers.0.mlp.gate_proj.weight: shape [80, 48], expected [96, 48]\n") !=
          std::string::npos);
    CHECK(line_count(r.err) == 7);
  }
}

TEST_CASE("aq-tokenize prints Hugging Face's ids for a whole file, for standard input, and fails cleanly") {
  fs::create_directories(work);
  const fs::path data = fs::path(AQ_DATA_DIR);
  const fs::path tokenizer_dir = data / "qwen3-tokenizer";
  const fs::path fixtures = fs::path(AQ_TEST_FIXTURES) / "tokenizer";
  simdjson::dom::parser parser;
  simdjson::dom::element captions, cases;
  REQUIRE(parser.load((fixtures / "qwen3_captions.json").string()).get(captions) == simdjson::SUCCESS);

  // The whole COCO captions file as one text: count and FNV-1a-64 of the ids (little-endian
  // uint32) from Hugging Face tokenizers 0.23.3.
  const run_result whole = run(AQ_TOKENIZE_EXE, {"--tokenizer", tokenizer_dir.string(),
                                                 (data / std::string(std::string_view(captions["file"]))).string()});
  REQUIRE(whole.exit_code == 0);
  CHECK(line_count(whole.out) == 1);
  CHECK(whole.out.find("  ") == std::string::npos);
  std::istringstream ids(whole.out);
  std::uint64_t hash = 0xCBF29CE484222325ull, n = 0;
  for (std::uint32_t id; ids >> id; ++n) {
    for (int b = 0; b < 4; ++b) {
      hash ^= (id >> (8 * b)) & 0xFFu;
      hash *= 0x100000001B3ull;
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  simdjson::dom::array expected_whole = captions["whole_file"].get_array();
  CHECK(n == std::uint64_t(std::int64_t(expected_whole.at(0))));
  CHECK(std::string(hex) == std::string(std::string_view(expected_whole.at(1))));

  // A chat-formatted text with special tokens, from standard input, tokenizer.json named directly.
  simdjson::dom::parser p2;
  REQUIRE(p2.load((fixtures / "qwen3_cases.json").string()).get(cases) == simdjson::SUCCESS);
  int checked = 0;
  for (simdjson::dom::element c : cases["cases"].get_array()) {
    const std::string text{std::string_view(c["text"])};
    if (text.find("<|im_start|>") == std::string::npos && text.find("\xE4\xB8") == std::string::npos) continue;
    std::string expected;
    for (simdjson::dom::element v : c["ids"].get_array()) {
      if (!expected.empty()) expected += ' ';
      expected += std::to_string(std::int64_t(v));
    }
    const fs::path input = work / "input.txt";
    write_text(input, text);
    const run_result r = run(AQ_TOKENIZE_EXE, {"--tokenizer", (tokenizer_dir / "tokenizer.json").string()}, input.string());
    CAPTURE(text);
    CHECK(r.exit_code == 0);
    CHECK(r.out == expected + "\n");
    if (++checked == 3) break;
  }
  CHECK(checked == 3);

  // An empty file is an empty line; a missing file and invalid UTF-8 are one-line errors naming it.
  write_text(work / "empty.txt", "");
  const run_result empty = run(AQ_TOKENIZE_EXE, {"--tokenizer", tokenizer_dir.string(), (work / "empty.txt").string()});
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "\n");
  const run_result missing =
      run(AQ_TOKENIZE_EXE, {"--tokenizer", tokenizer_dir.string(), (work / "no_such_input.txt").string()});
  CHECK(missing.exit_code == 1);
  CHECK(line_count(missing.err) == 1);
  CHECK(missing.err.find("no_such_input.txt") != std::string::npos);
  fs::remove(work / "fifo_input.txt");
  REQUIRE(::mkfifo((work / "fifo_input.txt").c_str(), 0600) == 0);  // nobody writes: must not wait
  const run_result fifo = run(AQ_TOKENIZE_EXE, {"--tokenizer", tokenizer_dir.string(), (work / "fifo_input.txt").string()});
  CHECK(fifo.exit_code == 1);
  CHECK(fifo.err.find("fifo_input.txt: not a regular file") != std::string::npos);
  write_text(work / "latin1.txt", "caf\xE9\n");
  const run_result latin1 = run(AQ_TOKENIZE_EXE, {"--tokenizer", tokenizer_dir.string(), (work / "latin1.txt").string()});
  CHECK(latin1.exit_code == 1);
  CHECK(line_count(latin1.err) == 1);
  CHECK(latin1.err.find("latin1.txt") != std::string::npos);
  CHECK(latin1.out.empty());
}

#ifdef AQ_AUTOQUANT_CUDA_EXE
TEST_CASE("aq-autoquant-cuda rejects bad GPU flags with one line, exit code 2 and no output") {
  fs::create_directories(work);
  const fs::path out = work / "cuda_out";
  fs::remove_all(out);
  const std::vector<std::vector<std::string>> cases = {
      {"--memory-budget-gib", "-1"},   {"--memory-budget-gib", "12GiB"}, {"--weight-cache-gib", "nan"},
      {"--micro-batch", "0"},          {"--micro-batch", "2.5"},         {"--gpu-attention", "fast"},
      {"--activations", "sometimes"},  {"--memory-budget-gib"},
  };
  for (std::vector<std::string> args : cases) {
    const std::string flag = args.front();
    args.insert(args.end(), {"--output-dir", out.string()});
    CAPTURE(args[0]);
    const run_result r = run(AQ_AUTOQUANT_CUDA_EXE, args);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find(flag) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("aq-autoquant-cuda checks its output locations, numbers and --seq-len before the GPU is touched") {
  fs::create_directories(work);
  write_text(work / "cuda_regular_file", "x");
  const fs::path out = work / "cuda_out";
  fs::remove_all(out);
  const std::string under_file = (work / "cuda_regular_file" / "x").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--output-dir", under_file}, "--output-dir " + under_file + ": "},
      {{"--output-dir", out.string(), "--result-json", under_file}, "--result-json " + under_file + ": "},
      {{"--output-dir", out.string(), "--dump-batches", "/proc/aq_batches.safetensors"}, "--dump-batches "},
      {{"--output-dir", out.string(), "--threads", "4294967296"}, "--threads: 4294967296 is out of range"},
      {{"--output-dir", out.string(), "--model", (fs::path(AQ_TEST_FIXTURES) / "qwen3_vl" / "tiny_tied").string(),
        "--seq-len", "1000000000"},
       "max_position_embeddings 4096"},
      {{"--output-dir", out.string(), "--calib", work.string()}, "--calib " + work.string() + ": is a directory"},
  };
  for (const auto& [args, needle] : cases) {
    CAPTURE(needle);
    const run_result r = run(AQ_AUTOQUANT_CUDA_EXE, args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.starts_with("aq-autoquant-cuda: "));
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(line_count(r.err) == 1);
    CHECK_FALSE(fs::exists(out));
  }
}
#endif

// ---------------------------------------------------------------------------------------------
// aq-logits and aq-autoquant end to end on fixtures of the repository (tests/fixtures/, data/).

namespace {

const fs::path qwen3_vl_fixtures = fs::path(AQ_TEST_FIXTURES) / "qwen3_vl";

struct reference_file {
  aq::safetensors_file file;
  explicit reference_file(const fs::path& path) : file(path, aq::readable_dtypes) {}
  std::vector<float> f(const std::string& name) const { return aq::to_float_vector(file.at(name)); }
  std::vector<std::int64_t> i(const std::string& name) const { return aq::to_int64_vector(file.at(name)); }
};

std::string ids_text(const std::vector<std::int64_t>& ids) {
  std::string s;
  for (const std::int64_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// A failure of `exe_name` is exactly one line "exe_name: ..." containing `needle`, with `code`.
void check_error_line(const run_result& r, const std::string& exe_name, int code, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.exit_code == code);
  CHECK(line_count(r.err) == 1);
  CHECK(r.err.starts_with(exe_name + ": "));
  CHECK(r.err.find(needle) != std::string::npos);
}

// Every entry of `dir` whose name holds ".tmp." or ".old." (a temporary left behind).
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp.") != std::string::npos || name.find(".old.") != std::string::npos) found.push_back(name);
  }
  return found;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("aq-logits runs text-only ids on the tiny fixtures and matches transformers' logits") {
  fs::create_directories(work);
  for (const std::string checkpoint : {"tiny_tied", "tiny_untied"}) {
    CAPTURE(checkpoint);
    const reference_file ref(qwen3_vl_fixtures / (checkpoint + ".reference.safetensors"));
    const aq::tensor_view& shape = ref.file.at("text.input_ids");
    const std::int64_t B = shape.shape[0], T = shape.shape[1];
    const std::vector<std::int64_t> ids = ref.i("text.input_ids"), mask = ref.i("text.attention_mask");
    const std::vector<float> logits = ref.f("text.eager.logits");
    const std::int64_t V = static_cast<std::int64_t>(logits.size()) / (B * T);
    // The rows without left padding are single sequences as aq-logits runs them (positions 0..T-1).
    int compared = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      if (std::count(mask.begin() + b * T, mask.begin() + (b + 1) * T, 0) != 0) continue;
      const std::vector<std::int64_t> row(ids.begin() + b * T, ids.begin() + (b + 1) * T);
      const fs::path out = work / (checkpoint + "_text.safetensors");
      fs::remove(out);
      const run_result r = run(AQ_LOGITS_EXE, {"--model", (qwen3_vl_fixtures / checkpoint).string(), "--ids",
                                               ids_text(row), "--out", out.string()});
      CAPTURE(r.err);
      REQUIRE(r.exit_code == 0);
      const reference_file got(out);
      CHECK(got.f("input_ids") == std::vector<float>(row.begin(), row.end()));
      const std::vector<float> ours = got.f("logits");
      REQUIRE(static_cast<std::int64_t>(ours.size()) == T * V);
      // Tolerance: max |ours - ref| <= 1e-5 * max |ref| (fp32 against fp32, summation order only).
      double diff = 0.0, scale = 0.0;
      for (std::int64_t k = 0; k < T * V; ++k) {
        const double want = logits[static_cast<std::size_t>(b * T * V + k)];
        diff = std::max(diff, std::abs(static_cast<double>(ours[static_cast<std::size_t>(k)]) - want));
        scale = std::max(scale, std::abs(want));
      }
      CHECK(diff <= 1e-5 * scale);
      // The loss: mean next-token cross-entropy of the reference logits, in float64.
      double loss = 0.0;
      for (std::int64_t t = 0; t + 1 < T; ++t) {
        const float* z = logits.data() + b * T * V + t * V;
        const double top = *std::max_element(z, z + V);
        double sum = 0.0;
        for (std::int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v]) - top);
        loss += top + std::log(sum) - z[row[static_cast<std::size_t>(t + 1)]];
      }
      loss /= static_cast<double>(T - 1);
      CHECK(std::abs(got.f("loss").at(0) - loss) <= 1e-5 * std::max(1.0, loss));
      ++compared;
    }
    CHECK(compared >= 1);
  }
}

TEST_CASE("aq-logits places images where the ids hold their placeholder runs, and refuses mismatches") {
  fs::create_directories(work);
  const fs::path model = qwen3_vl_fixtures / "tiny_tied";
  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model);
  const std::int64_t vs = cfg.vision_start_token_id, pad = cfg.image_token_id, ve = cfg.vision_end_token_id;
  const std::string image = (fs::path(AQ_TEST_FIXTURES) / "images" / "alpha_grid.png").string();  // 256 x 256
  // 256x256 resized under max 4096 pixels to 64x64: (64/4)^2 = 256 patches, 256/4 = 64 image tokens.
  const std::vector<std::string> pixels = {"--min-pixels", "1024", "--max-pixels", "4096"};
  const std::int64_t n = 64;
  const auto logits_run = [&](const std::vector<std::int64_t>& ids, const std::string& name) {
    const fs::path out = work / (name + ".safetensors");
    fs::remove(out);
    std::vector<std::string> args = {"--model", model.string(), "--ids", ids_text(ids), "--image", image,
                                     "--out", out.string()};
    args.insert(args.end(), pixels.begin(), pixels.end());
    const run_result r = run(AQ_LOGITS_EXE, args);
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    const reference_file got(out);
    return std::pair{got.f("input_ids"), got.f("logits")};
  };
  const std::vector<std::int64_t> body = {10, 11, 12, 13, 14};
  std::vector<std::int64_t> expanded = {vs};
  expanded.insert(expanded.end(), static_cast<std::size_t>(n), pad);
  expanded.push_back(ve);

  // Without a run, the image goes in front; a run already in front gives the same sequence.
  const auto [front_ids, front_logits] = logits_run(body, "image_front");
  std::vector<std::int64_t> want = expanded;
  want.insert(want.end(), body.begin(), body.end());
  CHECK(front_ids == std::vector<float>(want.begin(), want.end()));
  for (const float v : front_logits) REQUIRE(std::isfinite(v));
  std::vector<std::int64_t> single = {vs, pad, ve};
  single.insert(single.end(), body.begin(), body.end());
  const auto [single_ids, single_logits] = logits_run(single, "image_single_pad");
  CHECK(single_ids == front_ids);
  CHECK(single_logits == front_logits);

  // A chat prompt: the run inside the user turn (one pad expanded, or the full count kept).
  std::vector<std::int64_t> chat = {1, 2, 3, vs, pad, ve, 20, 21, 4, 5};
  const auto [chat_ids, chat_logits] = logits_run(chat, "image_chat");
  std::vector<std::int64_t> chat_want = {1, 2, 3};
  chat_want.insert(chat_want.end(), expanded.begin(), expanded.end());
  chat_want.insert(chat_want.end(), {20, 21, 4, 5});
  CHECK(chat_ids == std::vector<float>(chat_want.begin(), chat_want.end()));
  const auto [full_ids, full_logits] = logits_run(chat_want, "image_chat_full");
  CHECK(full_ids == chat_ids);
  CHECK(full_logits == chat_logits);

  // Runs that disagree with the images: one line each, exit code 1, no output.
  const fs::path out = work / "image_bad.safetensors";
  fs::remove(out);
  const auto bad = [&](const std::vector<std::int64_t>& ids, const std::vector<std::string>& images) {
    std::vector<std::string> args = {"--model", model.string(), "--ids", ids_text(ids), "--out", out.string()};
    for (const std::string& i : images) args.insert(args.end(), {"--image", i});
    args.insert(args.end(), pixels.begin(), pixels.end());
    return run(AQ_LOGITS_EXE, args);
  };
  check_error_line(bad({vs, pad, ve, 7, vs, pad, ve}, {image}), "aq-logits", 1, "2 image placeholder run(s)");
  check_error_line(bad({vs, pad, pad, ve, 7}, {image}), "aq-logits", 1, "needs 64 placeholder ids");
  check_error_line(bad({vs, pad, ve, 7}, {}), "aq-logits", 1, "no --image is given");
  check_error_line(bad({vs, pad, ve, 7}, {image, image}), "aq-logits", 1, "1 image placeholder run(s)");
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("aq-logits checks its flags and paths before it loads anything") {
  fs::create_directories(work);
  const std::string model = (qwen3_vl_fixtures / "tiny_tied").string();
  const fs::path out = work / "flags.safetensors";
  fs::remove(out);
  write_text(work / "regular_file", "x");
  const std::string image = (fs::path(AQ_TEST_FIXTURES) / "images" / "alpha_grid.png").string();
  const std::vector<std::string> base = {"--model", model, "--ids", "1 2 3", "--out", out.string()};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(AQ_LOGITS_EXE, args);
  };
  SUBCASE("pixel bounds are positive integers") {
    for (const std::string v : {"abc", "0", "-100", "12x", "99999999999999999999", ""}) {
      CAPTURE(v);
      check_error_line(with({"--image", image, "--max-pixels", v}), "aq-logits", 2, "--max-pixels");
    }
    check_error_line(with({"--min-pixels", "4096", "--max-pixels", "1024"}), "aq-logits", 2, "--min-pixels 4096 exceeds");
  }
  SUBCASE("token ids are integers within the vocabulary") {
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", "1 x 3", "--out", out.string()}), "aq-logits", 1,
                     "--ids: 'x' is not an integer");
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", "1 211", "--out", out.string()}), "aq-logits", 1,
                     "--ids: 211 is out of range (must be in [0, 210])");
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", "18446744073709551617", "--out", out.string()}),
                     "aq-logits", 1, "out of range");
  }
  SUBCASE("an image that is a directory or missing") {
    check_error_line(with({"--image", work.string()}), "aq-logits", 1, "--image " + work.string() + ": is a directory");
    check_error_line(with({"--image", (work / "no_such.png").string()}), "aq-logits", 1, "no_such.png");
  }
  SUBCASE("an output that cannot be written, and a model dir that is not one") {
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", "1 2", "--out", (work / "regular_file" / "o.st").string()}),
                     "aq-logits", 1, "--out ");
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", "1 2", "--out", work.string()}), "aq-logits", 1,
                     "is a directory, not a regular file");
    check_error_line(run(AQ_LOGITS_EXE, {"--model", (work / "regular_file").string(), "--ids", "1", "--out", out.string()}),
                     "aq-logits", 1, "--model");
  }
  SUBCASE("a sequence longer than the model's positions") {
    std::string ids;
    for (int k = 0; k < 4097; ++k) ids += "1 ";
    check_error_line(run(AQ_LOGITS_EXE, {"--model", model, "--ids", ids, "--out", out.string()}), "aq-logits", 1,
                     "max_position_embeddings 4096");
  }
  CHECK_FALSE(fs::exists(out));
}

namespace {

// A tiny Qwen3-VL with the real Qwen3 vocabulary and tokenizer (data/qwen3-tokenizer), small
// random weights (norms 1), so aq-autoquant runs on it as on a published checkpoint.
fs::path write_vocab_checkpoint(const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string config = tiny_config;
  const auto set = [&](const std::string& from, const std::string& to) {
    REQUIRE(config.find(from) != std::string::npos);
    config.replace(config.find(from), from.size(), to);
  };
  set("\"vocab_size\": 160", "\"vocab_size\": 151936");
  set("\"image_token_id\": 157", "\"image_token_id\": 151655");
  set("\"video_token_id\": 158", "\"video_token_id\": 151656");
  set("\"vision_start_token_id\": 155", "\"vision_start_token_id\": 151652");
  set("\"vision_end_token_id\": 156", "\"vision_end_token_id\": 151653");
  write_text(dir / "config.json", config);
  fs::copy_file(fs::path(AQ_SOURCE_DIR) / "data" / "qwen3-tokenizer" / "tokenizer.json", dir / "tokenizer.json");
  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(dir);
  aq::safetensors_writer writer;
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (const auto& spec : aq::qwen3_vl::expected_parameters(cfg)) {
    std::vector<float> values(static_cast<std::size_t>(spec.numel()));
    const bool norm = spec.name.find("norm") != std::string::npos && spec.name.ends_with(".weight");
    for (float& v : values) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      v = norm ? 1.0f : (static_cast<float>(state >> 40) / static_cast<float>(1u << 24) - 0.5f) * 0.1f;
    }
    writer.add_rounded(spec.name, aq::dtype_bf16, spec.shape, values);
  }
  writer.write(dir / "model.safetensors");
  return dir;
}

const std::vector<std::string> quick_run = {"--num-samples", "4", "--seq-len", "16", "--batch-size", "2", "--threads", "2"};

std::vector<std::string> autoquant_args(std::vector<std::string> args) {
  args.insert(args.end(), quick_run.begin(), quick_run.end());
  return args;
}

const std::vector<std::string> report_set = {"autoquant_lm_autoquant.log", "autoquant_lm_autoquant_state.safetensors",
                                             "autoquant_lm_quant_manifest.json", "per-layer-sensitivity.json",
                                             "per-layer-sensitivity.md"};

}  // namespace

TEST_CASE("aq-autoquant runs the built-in default and a checkpoint end to end, outputs published as one set") {
  fs::create_directories(work);
  const fs::path root = work / "autoquant";
  fs::remove_all(root);
  fs::create_directories(root);

  SUBCASE("the built-in default: reports, result JSON and batches, no temporaries") {
    const fs::path out = root / "default";
    const run_result r = run(AQ_AUTOQUANT_EXE, autoquant_args({"--output-dir", out.string(), "--result-json",
                                                               (root / "result.json").string(), "--dump-batches",
                                                               (root / "batches.safetensors").string()}));
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(names_in(out) == report_set);
    CHECK(r.out.find("wrote " + out.string()) != std::string::npos);
    simdjson::dom::parser parser;
    simdjson::dom::element result;
    REQUIRE(parser.load((root / "result.json").string()).get(result) == simdjson::SUCCESS);
    const reference_file batches(root / "batches.safetensors");
    const aq::tensor_view& stacked = batches.file.at("input_ids");
    CHECK(std::vector<std::int64_t>(stacked.shape.begin(), stacked.shape.end()) == std::vector<std::int64_t>{4, 16});
    CHECK(temporaries(root).empty());
  }

  SUBCASE("image-caption data: --dump-batches writes each batch's tokens, pixel_values and grid") {
    const fs::path model = write_vocab_checkpoint(root / "vocab_images");
    const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model);
    const std::string image = (fs::path(AQ_TEST_FIXTURES) / "images" / "alpha_grid.png").string();
    write_text(root / "pairs.jsonl", "{\"image\": \"" + image + "\", \"caption\": \"A grid of coloured squares.\"}\n");
    const run_result r = run(AQ_AUTOQUANT_EXE, {"--device", "cpu", "--model", model.string(), "--calib",
                                                (root / "pairs.jsonl").string(), "--scope", "all", "--formats",
                                                "fp8_e4m3,int8_w8a8", "--effective-bits", "8", "--output-dir",
                                                (root / "images").string(), "--dump-batches",
                                                (root / "image_batches.safetensors").string()});
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    const reference_file batches(root / "image_batches.safetensors");
    const std::vector<std::int64_t> grid = aq::to_int64_vector(batches.file.at("0.image_grid_thw"));
    REQUIRE(grid.size() == 3);
    const std::int64_t patches = grid[0] * grid[1] * grid[2];
    const aq::tensor_view& pixels = batches.file.at("0.pixel_values");
    CHECK(pixels.shape.size() == 2);
    CHECK(pixels.shape[0] == patches);
    const std::vector<std::int64_t> ids = aq::to_int64_vector(batches.file.at("0.input_ids"));
    const std::int64_t merge = cfg.vision.spatial_merge_size;
    CHECK(std::count(ids.begin(), ids.end(), cfg.image_token_id) == patches / (merge * merge));
    CHECK(aq::to_int64_vector(batches.file.at("0.labels")).size() == ids.size());
    CHECK(batches.file.find("1.input_ids") == nullptr);  // one pair, one batch
    CHECK(temporaries(root).empty());
  }

  SUBCASE("a checkpoint with the Qwen3 vocabulary; a re-run replaces the whole folder") {
    const fs::path model = write_vocab_checkpoint(root / "vocab_model");
    const fs::path out = root / "reports";
    const std::vector<std::string> args = autoquant_args({"--model", model.string(), "--output-dir", out.string(),
                                                          "--result-json", (out / "result.json").string()});
    const run_result first = run(AQ_AUTOQUANT_EXE, args);
    CAPTURE(first.err);
    REQUIRE(first.exit_code == 0);
    std::vector<std::string> want = report_set;
    want.push_back("result.json");
    std::sort(want.begin(), want.end());
    CHECK(names_in(out) == want);
    const std::string manifest = read_text(out / "autoquant_lm_quant_manifest.json");
    CHECK(manifest.find("model.language_model.layers.1.mlp.down_proj") != std::string::npos);

    // Files an older run of another scheme left, a temporary it left inside, and a staging folder
    // and a temporary of a killed run beside it: the re-run leaves only its own set.
    write_text(out / "older_quant_manifest.json", "{}");
    write_text(out / "per-layer-sensitivity.md.tmp.4194300", "partial");
    fs::create_directories(root / "reports.tmp.4194301");
    write_text(root / "reports.tmp.4194301" / "per-layer-sensitivity.md", "partial");
    fs::create_directories(root / "reports.old.4194302");
    write_text(out / "autoquant_lm_quant_manifest.json", "stale");
    const run_result again = run(AQ_AUTOQUANT_EXE, args);
    CAPTURE(again.err);
    REQUIRE(again.exit_code == 0);
    CHECK(names_in(out) == want);
    CHECK(read_text(out / "autoquant_lm_quant_manifest.json") == manifest);  // deterministic, replaced
    CHECK(temporaries(root).empty());
  }
}

TEST_CASE("aq-autoquant refuses unwritable outputs, bad numbers and a too long --seq-len before any work") {
  fs::create_directories(work);
  const fs::path root = work / "autoquant_refused";
  fs::remove_all(root);
  fs::create_directories(root);
  write_text(root / "regular_file", "x");
  const fs::path out = root / "out";
  const auto refused = [&](std::vector<std::string> args, const std::string& needle) {
    const run_result r = run(AQ_AUTOQUANT_EXE, autoquant_args(args));
    check_error_line(r, "aq-autoquant", 2, needle);
    CHECK(r.out.empty());
    CHECK_FALSE(fs::exists(out));  // nothing written, no report before a late failure
    CHECK(temporaries(root).empty());
  };
  const std::string under_file = (root / "regular_file" / "x").string();

  SUBCASE("output locations") {
    refused({"--output-dir", under_file}, "--output-dir " + under_file + ": ");
    refused({"--output-dir", (root / "regular_file").string()}, "exists and is a regular file, not a directory");
    refused({"--output-dir", "/proc/aq_no_such_dir/out"}, "--output-dir /proc/aq_no_such_dir/out: ");
    refused({"--output-dir", out.string(), "--result-json", under_file}, "--result-json " + under_file + ": ");
    refused({"--output-dir", out.string(), "--result-json", root.string()}, "--result-json " + root.string() +
                                                                                ": exists and is a directory");
    refused({"--output-dir", out.string(), "--dump-batches", "/proc/aq_batches.safetensors"}, "--dump-batches ");
    const fs::path fifo = root / "fifo.json";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    refused({"--output-dir", out.string(), "--result-json", fifo.string()}, "exists and is a FIFO");
    fs::remove(fifo);
    // A folder that holds other files is not replaced.
    const fs::path mine = root / "mine";
    fs::create_directories(mine);
    write_text(mine / "notes.txt", "keep");
    refused({"--output-dir", mine.string()}, "holds notes.txt");
    CHECK(read_text(mine / "notes.txt") == "keep");
  }
  SUBCASE("numbers out of range") {
    refused({"--output-dir", out.string(), "--threads", "4294967296"}, "--threads: 4294967296 is out of range");
    refused({"--output-dir", out.string(), "--threads", "100000"}, "--threads: 100000 is out of range (must be in [0, 1024])");
    refused({"--output-dir", out.string(), "--num-samples", "99999999999999999999"}, "--num-samples: 99999999999999999999 is out of range");
    refused({"--output-dir", out.string(), "--seed", "-1"}, "--seed: -1 is out of range");
    refused({"--output-dir", out.string(), "--effective-bits", "1e999"}, "--effective-bits: '1e999' is out of range");
    refused({"--output-dir", out.string(), "--batch-size", " 4"}, "--batch-size: ' 4' is not an integer");
  }
  SUBCASE("a sequence length beyond max_position_embeddings, and input paths") {
    const fs::path model = qwen3_vl_fixtures / "tiny_tied";
    std::vector<std::string> args = autoquant_args({"--model", model.string(), "--output-dir", out.string()});
    args.insert(args.end(), {"--seq-len", "1000000000"});
    const run_result r = run(AQ_AUTOQUANT_EXE, args);
    check_error_line(r, "aq-autoquant", 2, "--seq-len 1000000000 exceeds the model's max_position_embeddings 4096");
    CHECK_FALSE(fs::exists(out));
    std::vector<std::string> builtin = autoquant_args({"--output-dir", out.string()});
    builtin.insert(builtin.end(), {"--seq-len", "4097"});  // after quick_run's, so that it wins
    check_error_line(run(AQ_AUTOQUANT_EXE, builtin), "aq-autoquant", 2,
                     "--seq-len 4097 exceeds the model's max_position_embeddings 4096 (the built-in model)");
    CHECK_FALSE(fs::exists(out));
    refused({"--output-dir", out.string(), "--calib", root.string()}, "--calib " + root.string() + ": is a directory");
    refused({"--output-dir", out.string(), "--calib", (root / "none.txt").string()}, "--calib ");
    refused({"--output-dir", out.string(), "--model", (root / "regular_file").string()}, "--model ");
  }
}

TEST_CASE("aq-autoquant --device: cpu runs the built-in default as before; a bogus device, cuda without CUDA or a GPU, "
          "and GPU flags on the CPU are one line") {
  fs::create_directories(work);
  const fs::path root = work / "autoquant_device";
  fs::remove_all(root);
  fs::create_directories(root);
  const fs::path out = root / "out";

  const run_result cpu = run(AQ_AUTOQUANT_EXE, autoquant_args({"--device", "cpu", "--output-dir", (root / "cpu").string()}));
  CAPTURE(cpu.err);
  REQUIRE(cpu.exit_code == 0);
  CHECK(names_in(root / "cpu") == report_set);
#ifndef AQ_AUTOQUANT_CUDA_EXE  // without CUDA the default device is the CPU: the same run
  const run_result plain = run(AQ_AUTOQUANT_EXE, autoquant_args({"--output-dir", (root / "default").string()}));
  REQUIRE(plain.exit_code == 0);
  for (const char* name : {"autoquant_lm_quant_manifest.json", "per-layer-sensitivity.json",
                          "per-layer-sensitivity.md", "autoquant_lm_autoquant_state.safetensors"}) {
    CAPTURE(name);
    CHECK(read_text(root / "cpu" / name) == read_text(root / "default" / name));
  }
#endif

  const run_result bogus = run(AQ_AUTOQUANT_EXE, autoquant_args({"--device", "bogus", "--output-dir", out.string()}));
  check_error_line(bogus, "aq-autoquant", 2, "--device: expected cpu or cuda, got 'bogus'");
  CHECK_FALSE(fs::exists(out));

  for (const std::vector<std::string>& flag : std::vector<std::vector<std::string>>{
           {"--micro-batch", "2"}, {"--gpu-attention", "fp32"}, {"--profile-kernels"}}) {
    std::vector<std::string> args = {"--device", "cpu", "--output-dir", out.string()};
    args.insert(args.end(), flag.begin(), flag.end());
    check_error_line(run(AQ_AUTOQUANT_EXE, autoquant_args(args)), "aq-autoquant", 2,
                     flag.front() + ": only with --device cuda");
    CHECK_FALSE(fs::exists(out));
  }

  const run_result gpu = run(AQ_AUTOQUANT_EXE, autoquant_args({"--device", "cuda", "--output-dir", out.string()}));
#ifdef AQ_AUTOQUANT_CUDA_EXE
  if (gpu.exit_code != 0) {  // a CUDA build on a machine without a GPU
    check_error_line(gpu, "aq-autoquant", 2, "--device cuda: no CUDA device is visible");
    CHECK_FALSE(fs::exists(out));
  }
#else
  check_error_line(gpu, "aq-autoquant", 2, "--device cuda: this build has no CUDA");
  CHECK_FALSE(fs::exists(out));
#endif
  CHECK(temporaries(root).empty());
}

// ---------------------------------------------------------------------------------------------
// Closed-loop evaluation: aq-autoquant --evaluate against a float64 reference computed from
// aq-logits outputs on the same ids, and aq-eval on the mix that run chose.

namespace {

struct token_reference {
  long double kl = 0, nll = 0, agree = 0, tokens = 0, nll_unquantized = 0;
};

// KL(p‖q), −log q(next id), argmax agreement and −log p(next id) of every position but the last.
void add_reference(const reference_file& p_file, const reference_file& q_file, token_reference& out) {
  const std::vector<float> p = p_file.f("logits"), q = q_file.f("logits"), ids = p_file.f("input_ids");
  const auto T = static_cast<std::int64_t>(ids.size());
  const auto V = static_cast<std::int64_t>(p.size()) / T;
  for (std::int64_t t = 0; t + 1 < T; ++t) {
    const float* pr = p.data() + t * V;
    const float* qr = q.data() + t * V;
    long double zp = 0, zq = 0;
    std::int64_t ap = 0, aq_ = 0;
    for (std::int64_t v = 0; v < V; ++v) {
      zp += std::exp(static_cast<long double>(pr[v]));
      zq += std::exp(static_cast<long double>(qr[v]));
      if (pr[v] > pr[ap]) ap = v;
      if (qr[v] > qr[aq_]) aq_ = v;
    }
    const long double lzp = std::log(zp), lzq = std::log(zq);
    for (std::int64_t v = 0; v < V; ++v) {
      const long double lp = pr[v] - lzp, lq = qr[v] - lzq;
      out.kl += std::exp(lp) * (lp - lq);
    }
    const auto y = static_cast<std::int64_t>(ids[static_cast<std::size_t>(t + 1)]);
    out.nll += lzq - qr[y];
    out.nll_unquantized += lzp - pr[y];
    out.agree += ap == aq_ ? 1 : 0;
    out.tokens += 1;
  }
}

simdjson::dom::element find_mix(simdjson::dom::element evaluation, std::string_view name) {
  for (simdjson::dom::element m : evaluation["mixes"].get_array()) {
    if (std::string_view(m["name"].get_string()) == name) return m;
  }
  FAIL("no mix " << name);
  return evaluation;
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

const std::vector<std::string> evaluation_set = {"bits_per_layer.svg", "evaluation.json", "evaluation.md",
                                                 "pareto.svg", "report.html", "scores_heatmap.svg"};

}  // namespace

TEST_CASE("aq-autoquant --evaluate: KL, perplexity and agreement equal a float64 reference from aq-logits; "
          "aq-eval evaluates the chosen mix again") {
  const fs::path root = work / "evaluate";
  fs::remove_all(root);
  fs::create_directories(root);
  const fs::path model = write_vocab_checkpoint(root / "model");
  const std::vector<std::string> calib_lines = {"A cat sits on a red chair.", "Two dogs run along the beach.",
                                                "A man rides a bicycle down the street.", "A plate of food on a table."};
  const std::vector<std::string> held_out = {"A bus parked next to a building.", "A woman holding an umbrella in the rain."};
  std::string calib_text, eval_text = calib_lines[1] + "\n";  // a calibration caption is skipped
  for (const std::string& line : calib_lines) calib_text += line + "\n";
  for (const std::string& line : held_out) eval_text += line + "\n";
  write_text(root / "calib.txt", calib_text);
  write_text(root / "eval.txt", eval_text);
  const fs::path out = root / "out";
  const std::vector<std::string> args = {"--model", model.string(), "--calib", (root / "calib.txt").string(),
                                         "--eval-data", (root / "eval.txt").string(), "--evaluate", "--formats",
                                         "int8_w8a8,w4a16", "--effective-bits", "7", "--num-samples", "4",
                                         "--seq-len", "16", "--batch-size", "2", "--threads", "2", "--device", "cpu"};
  std::vector<std::string> first_args = args;
  first_args.insert(first_args.end(), {"--output-dir", out.string()});
  const run_result r = run(AQ_AUTOQUANT_EXE, first_args);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> want = report_set;
  want.insert(want.end(), evaluation_set.begin(), evaluation_set.end());
  std::sort(want.begin(), want.end());
  CHECK(names_in(out) == want);
  CHECK(r.out.find("evaluation: 2 held-out samples") != std::string::npos);

  simdjson::dom::parser parser;
  simdjson::dom::element e;
  REQUIRE(parser.load((out / "evaluation.json").string()).get(e) == simdjson::SUCCESS);
  CHECK(int64_t(e["data"]["samples"]) == 2);
  CHECK(int64_t(e["data"]["skipped_calibration"]) == 1);
  const simdjson::dom::element chosen = find_mix(e, "chosen");
  REQUIRE(double(chosen["effective_bits"]) < 16.0);  // the chosen mix quantizes something

  const fs::path manifest = out / "autoquant_lm_quant_manifest.json";
  const fs::path state = out / "autoquant_lm_autoquant_state.safetensors";
  token_reference ref;
  for (std::size_t i = 0; i < held_out.size(); ++i) {
    const fs::path p = root / ("p" + std::to_string(i) + ".safetensors");
    const fs::path q = root / ("q" + std::to_string(i) + ".safetensors");
    const run_result rp = run(AQ_LOGITS_EXE, {"--model", model.string(), "--text", held_out[i], "--out", p.string()});
    const run_result rq = run(AQ_LOGITS_EXE, {"--model", model.string(), "--text", held_out[i], "--out", q.string(),
                                              "--recipes", manifest.string(), "--state", state.string()});
    CAPTURE(rq.err);
    REQUIRE(rp.exit_code == 0);
    REQUIRE(rq.exit_code == 0);
    add_reference(reference_file(p), reference_file(q), ref);
  }
  CHECK(int64_t(e["data"]["tokens"]) == static_cast<std::int64_t>(ref.tokens));
  const double kl = static_cast<double>(ref.kl / ref.tokens);
  const double ppl = static_cast<double>(std::exp(ref.nll / ref.tokens));
  const double ppl_unquantized = static_cast<double>(std::exp(ref.nll_unquantized / ref.tokens));
  INFO("chosen mean KL " << double(chosen["mean_kl"]) << " vs float64 " << kl);
  CHECK(kl > 0.0);
  CHECK(rel_diff(double(chosen["mean_kl"]), kl) < 1e-3);
  CHECK(rel_diff(double(chosen["perplexity"]), ppl) < 1e-5);
  CHECK(double(chosen["top1_agreement"]) == static_cast<double>(ref.agree / ref.tokens));
  const simdjson::dom::element unquantized = find_mix(e, "unquantized");
  CHECK(double(unquantized["mean_kl"]) == 0.0);
  CHECK(rel_diff(double(unquantized["perplexity"]), ppl_unquantized) < 1e-5);

  // Same inputs: byte-identical evaluation files.
  std::vector<std::string> again_args = args;
  again_args.insert(again_args.end(), {"--output-dir", (root / "again").string()});
  REQUIRE(run(AQ_AUTOQUANT_EXE, again_args).exit_code == 0);
  for (const std::string& name : evaluation_set) CHECK(read_text(root / "again" / name) == read_text(out / name));

  // aq-eval on that manifest: the same mix, formats from the file, the same measured quality.
  std::vector<std::string> eval_args = {"--model", model.string(), "--calib", (root / "calib.txt").string(),
                                        "--eval-data", (root / "eval.txt").string(), "--recipes", manifest.string(),
                                        "--num-samples", "4", "--seq-len", "16", "--batch-size", "2", "--threads", "2",
                                        "--device", "cpu", "--output-dir", (root / "eval_out").string()};
  const run_result re = run(AQ_EVAL_EXE, eval_args);
  CAPTURE(re.err);
  REQUIRE(re.exit_code == 0);
  simdjson::dom::parser parser2;
  simdjson::dom::element e2;
  REQUIRE(parser2.load((root / "eval_out" / "evaluation.json").string()).get(e2) == simdjson::SUCCESS);
  CHECK(double(find_mix(e2, "chosen")["mean_kl"]) == double(chosen["mean_kl"]));
  CHECK(double(find_mix(e2, "chosen")["effective_bits"]) == double(chosen["effective_bits"]));
  // aq-eval without --recipes, and a recipe file naming an unknown recipe: one line, nothing written.
  check_error_line(run(AQ_EVAL_EXE, {"--output-dir", (root / "none").string()}), "aq-eval", 2, "--recipes is required");
  write_text(root / "bad_map.json", R"({"*q_proj": "fp9"})");
  eval_args.back() = (root / "bad").string();
  eval_args[7] = (root / "bad_map.json").string();
  check_error_line(run(AQ_EVAL_EXE, eval_args), "aq-eval", 2, "fp9");
  CHECK_FALSE(fs::exists(root / "bad"));
  CHECK_FALSE(fs::exists(root / "none"));
}

TEST_CASE("aq-export: usage errors exit 2, refusals exit 1 and write nothing, a mix is exported and published") {
  fs::create_directories(work);
  const fs::path model = work / "export_model";
  const written w = write_tiny_checkpoint(model);
  const fs::path map = work / "export_map.json", state = work / "export_state.safetensors", out = work / "export_out";
  fs::remove_all(out);
  write_text(map, R"({"model.language_model.layers.0.self_attn.*": "fp8_e4m3",
                      "model.language_model.layers.1.mlp.*": "int8_w8a8"})");
  aq::safetensors_writer amax;
  const float half = 0.5f, one = 1.0f;
  for (const std::string proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    const std::string name = "model.language_model.layers.0.self_attn." + proj;
    amax.add(name + ".weight_quantizer._amax", {}, std::span<const float>(&half, 1));
    amax.add(name + ".input_quantizer._amax", {}, std::span<const float>(&one, 1));
  }
  for (const std::string proj : {"gate_proj", "up_proj", "down_proj"}) {
    const std::string name = "model.language_model.layers.1.mlp." + proj;
    const std::int64_t rows = w.shapes.at(name + ".weight").front();
    const std::vector<float> rows_amax(static_cast<std::size_t>(rows), 0.5f);
    amax.add(name + ".weight_quantizer._amax", {rows, 1}, std::span<const float>(rows_amax));
    amax.add(name + ".input_quantizer._amax", {}, std::span<const float>(&one, 1));
  }
  amax.write(state);
  const std::vector<std::string> base = {"--model", model.string(), "--recipes", map.string(), "--state", state.string(),
                                         "--output-dir", out.string()};
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(AQ_EXPORT_EXE, args);
  };

  const run_result help = run(AQ_EXPORT_EXE, {"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.starts_with("usage: aq-export --model DIR"));
  check_error_line(run(AQ_EXPORT_EXE, base), "aq-export", 2, "--format is required");
  check_error_line(with({"--format", "gguf"}), "aq-export", 2, "--format: 'gguf' is unknown");
  check_error_line(with({"--format", "modelopt", "--module-root", "outer"}), "aq-export", 2, "--module-root");

  write_text(map, R"({"model.language_model.layers.1.mlp.*": "w4a4"})");
  check_error_line(with({"--format", "compressed-tensors"}), "aq-export", 1, "recipe 'w4a4' cannot be exported");
  CHECK_FALSE(fs::exists(out));
  CHECK(temporaries(work).empty());

  write_text(map, R"({"model.language_model.layers.0.self_attn.*": "fp8_e4m3",
                      "model.language_model.layers.1.mlp.*": "int8_w8a8"})");
  for (const std::string format : {"modelopt", "compressed-tensors"}) {
    CAPTURE(format);
    const run_result r = with({"--format", format});
    CAPTURE(r.err);
    CHECK(r.exit_code == 0);
    const aq::safetensors_checkpoint exported(out, std::vector<aq::dtype>{aq::dtype_bf16, aq::dtype_f32, {"F8_E4M3", 1},
                                                                          {"I8", 1}});
    CHECK(exported.at("model.language_model.layers.0.self_attn.q_proj.weight").dtype.name == "F8_E4M3");
    CHECK(exported.at("model.language_model.layers.1.mlp.up_proj.weight").dtype.name == "I8");
    CHECK(exported.at("model.visual.blocks.0.attn.qkv.weight").dtype == aq::dtype_bf16);
    CHECK(fs::exists(out / "hf_quant_config.json") == (format == "modelopt"));
    CHECK(temporaries(work).empty());
  }
}

TEST_CASE("aq-autoquant --export-dir writes the chosen mix as a checkpoint; a candidate the layout cannot express "
          "is refused before any work") {
  const fs::path root = work / "autoquant_export";
  fs::remove_all(root);
  fs::create_directories(root);
  const fs::path model = write_vocab_checkpoint(root / "model");
  const std::vector<std::string> base = autoquant_args({"--model", model.string(), "--formats", "int8_w8a8,fp8_e4m3",
                                                        "--effective-bits", "9", "--device", "cpu"});
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--output-dir", (root / "reports").string(), "--export-dir", (root / "ct").string(),
                           "--export-format", "compressed-tensors"});
  const run_result r = run(AQ_AUTOQUANT_EXE, args);
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("exported " + (root / "ct").string()) != std::string::npos);
  const std::string config = read_text(root / "ct" / "config.json");
  CHECK(config.find("\"quant_method\": \"compressed-tensors\"") != std::string::npos);
  CHECK(fs::exists(root / "ct" / "model.safetensors"));
  // The same mix through aq-export from the run's manifest and state: the same files.
  const run_result x = run(AQ_EXPORT_EXE, {"--model", model.string(), "--recipes",
                                           (root / "reports" / "autoquant_lm_quant_manifest.json").string(), "--state",
                                           (root / "reports" / "autoquant_lm_autoquant_state.safetensors").string(),
                                           "--format", "compressed-tensors", "--output-dir", (root / "ct2").string()});
  CAPTURE(x.err);
  REQUIRE(x.exit_code == 0);
  for (const std::string name : {"config.json", "model.safetensors"}) {
    CHECK(read_text(root / "ct" / name) == read_text(root / "ct2" / name));
  }
  std::vector<std::string> refused = autoquant_args({"--model", model.string(), "--formats", "int8_w8a8,w4a8",
                                                     "--output-dir", (root / "no_reports").string(), "--export-dir",
                                                     (root / "no_export").string()});
  check_error_line(run(AQ_AUTOQUANT_EXE, refused), "aq-autoquant", 2, "'w4a8' cannot be exported");
  CHECK_FALSE(fs::exists(root / "no_reports"));
  CHECK_FALSE(fs::exists(root / "no_export"));
  // int4 blocks of 128 do not fit this model's 48 input columns: refused once the model's shapes are known,
  // before calibration, with nothing written.
  refused[3] = "int8_w8a8,w4a16";
  check_error_line(run(AQ_AUTOQUANT_EXE, refused), "aq-autoquant", 2, "multiple of 128");
  CHECK_FALSE(fs::exists(root / "no_reports"));
  CHECK_FALSE(fs::exists(root / "no_export"));
}
