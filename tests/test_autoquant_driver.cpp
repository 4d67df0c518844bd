// The driver's building blocks: argument parsing and presets, --help generated from the recipe
// registry, the batch dump (int64 [N, T] safetensors read back) and its SHA-256 digest, and the
// errors bad inputs give before any output is written.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "aq/core/atomic_file.hpp"
#include "aq/io/checkpoint/safetensors.hpp"
#include "aq/io/data/calib_batches.hpp"
#include "aq/io/data/calib_dataset.hpp"
#include "aq/io/tokenizer/tokenizer.hpp"
#include "aq/quant/recipe_registry.hpp"

#include "cli/options.hpp"
#include "cli/result_json.hpp"

namespace test_autoquant_driver {

namespace {

using namespace aq;
namespace fs = std::filesystem;

autoquant::driver_options parse(std::vector<std::string> args) { return autoquant::parse_arguments(args); }

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("aq_test_autoquant_driver_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("command-line flags, presets and their precedence") {
  const auto o = parse({"--formats", "fp8_e4m3,int8_w8a8", "--effective-bits", "6.5", "--scope", "all", "--disable",
                        "*lm_head*", "--disable", "*.0.*", "--method", "kl_div", "--num-samples", "32", "--seq-len",
                        "64", "--batch-size", "4", "--scheme-name", "x", "--output-dir", "out", "--seed", "5"});
  CHECK(o.formats == std::vector<std::string>{"fp8_e4m3", "int8_w8a8"});
  CHECK(o.effective_bits == 6.5);
  CHECK(o.scope == autoquant::scope_preset::all);
  CHECK(o.disable == std::vector<std::string>{"*lm_head*", "*.0.*"});
  CHECK(o.method == autoquant::score_method::kl_div);
  CHECK(*o.num_samples == 32);
  CHECK(*o.seq_len == 64);
  CHECK(o.batch_size == 4);
  CHECK(o.seed == 5);
  CHECK(!o.keep_padding);
  CHECK(parse({"--keep-padding"}).keep_padding);
  CHECK(parse({}).image_max_pixels == 16777216);
  CHECK(parse({"--image-max-pixels", "200704"}).image_max_pixels == 200704);
  CHECK_THROWS_WITH_AS(parse({"--image-max-pixels", "1000"}), doctest::Contains("--image-max-pixels"), aq::error);

  const auto p = parse({"--effective-bits", "7", "--preset", "wint8_aint4_autoquant_lm"});
  CHECK(p.formats == std::vector<std::string>{"w8a4"});
  CHECK(p.effective_bits == 7.0);  // an explicit flag wins wherever it stands
  CHECK(*p.scheme_name == "wint8_aint4_autoquant_lm");
  CHECK(*p.dataset_size == "medium");
  CHECK(p.quant_formats == std::vector<std::string>{"INT8_WEIGHT_INT4_ACT_CFG"});
  const auto f = parse({"--preset", "fp8_autoquant_all_layers"});
  CHECK(*f.scheme_name == "fp8_autoquant_all_layers_fp8");
  CHECK(f.effective_bits == 11.0);
  CHECK(f.batch_size == 1);
  CHECK(f.custom_names);
  CHECK(autoquant::dataset_size_samples(*f.dataset_size) == 512);

  CHECK_THROWS_WITH_AS(parse({"--bogus"}), doctest::Contains("unknown argument '--bogus'"), aq::error);
  CHECK_THROWS_WITH_AS(parse({"--effective-bits", "abc"}), doctest::Contains("not a number"), aq::error);
  CHECK_THROWS_WITH_AS(parse({"--effective-bits"}), doctest::Contains("missing value"), aq::error);
  CHECK_THROWS_WITH_AS(parse({"--scope", "vision"}), doctest::Contains("valid scopes: lm, all"), aq::error);
  CHECK_THROWS_WITH_AS(parse({"--preset", "x"}), doctest::Contains("valid presets"), aq::error);
  CHECK_THROWS_WITH_AS(parse({"--dataset-size", "huge"}), doctest::Contains("small (16)"), aq::error);
}

TEST_CASE("--help lists every flag, every recipe of the registry and every preset") {
  const std::string help = autoquant::help_text();
  for (const char* flag : {"--model", "--calib", "--formats", "--effective-bits", "--scope", "--method", "--num-samples",
                           "--seq-len", "--batch-size", "--scheme-name", "--output-dir", "--disable", "--seed",
                           "--dump-batches", "--result-json", "--preset", "--dataset-size", "--keep-padding",
                           "--image-max-pixels"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
  for (const quant::recipe_info& r : quant::recipe_registry()) {
    CHECK(help.find("| " + std::string(r.name) + " |") != std::string::npos);
  }
  for (const autoquant::preset& p : autoquant::presets) CHECK(help.find(std::string(p.name)) != std::string::npos);
}

TEST_CASE("--device and the GPU flags are the driver's flags: parsed, validated by name, listed in --help") {
  const autoquant::driver_options none = parse({});
  CHECK_FALSE(none.device);
  CHECK_FALSE(none.gpu.first_flag);
  CHECK(none.gpu.attention == "cudnn");
  CHECK(none.gpu.activations == "auto");
  CHECK(none.gpu.recipe_gemm == "codes");
  CHECK(parse({"--recipe-gemm", "bf16"}).gpu.recipe_gemm == "bf16");
  CHECK_THROWS_WITH_AS(parse({"--recipe-gemm", "fp8"}), doctest::Contains("--recipe-gemm"), aq::error);
  CHECK(none.gpu.weight_cache_gib < 0.0);
  CHECK(none.gpu.memory_budget == autoquant::gpu_options::budget::half_modelopt);
  CHECK(parse({"--memory-budget-gib", "max"}).gpu.memory_budget == autoquant::gpu_options::budget::whole_device);
  CHECK(parse({"--memory-budget-gib", "max", "--memory-budget-gib", "auto"}).gpu.memory_budget ==
        autoquant::gpu_options::budget::half_modelopt);
  CHECK(none.gpu.micro_batch == 0);
  CHECK_FALSE(none.gpu.profile_kernels);

  const autoquant::driver_options d =
      parse({"--device", "cuda", "--micro-batch", "4", "--gpu-attention", "fp32", "--activations", "recompute",
             "--weight-cache-gib", "2.5", "--memory-budget-gib", "40", "--profile-kernels"});
  CHECK(d.device == "cuda");
  CHECK(d.gpu.first_flag == "--micro-batch");
  CHECK(d.gpu.micro_batch == 4);
  CHECK(d.gpu.attention == "fp32");
  CHECK(d.gpu.activations == "recompute");
  CHECK(d.gpu.weight_cache_gib == 2.5);
  CHECK(d.gpu.memory_budget == autoquant::gpu_options::budget::gib);
  CHECK(d.gpu.memory_budget_gib == 40.0);
  CHECK(d.gpu.profile_kernels);
  CHECK(parse({"--device", "cpu"}).device == "cpu");

  const auto refused = [](std::vector<std::string> args, const std::string& text) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(parse(std::move(args)), doctest::Contains(text.c_str()), aq::error);
  };
  refused({"--device", "tpu"}, "--device: expected cpu or cuda, got 'tpu'");
  refused({"--gpu-attention", "fast"}, "--gpu-attention: expected cudnn, tc or fp32, got fast");
  refused({"--activations", "sometimes"}, "--activations: expected auto, saved or recompute, got sometimes");
  refused({"--memory-budget-gib", "-1"}, "--memory-budget-gib: expected auto, max or a size in GiB >= 0, got '-1'");
  refused({"--memory-budget-gib", "12GiB"}, "--memory-budget-gib: expected auto, max or a size in GiB >= 0, got '12GiB'");
  refused({"--memory-budget-gib", "Auto"}, "--memory-budget-gib: expected auto, max or a size in GiB >= 0, got 'Auto'");
  refused({"--weight-cache-gib", "nan"}, "--weight-cache-gib: 'nan' is not a number");
  refused({"--micro-batch", "0"}, "--micro-batch: 0 is out of range");
  refused({"--micro-batch", "2.5"}, "--micro-batch: '2.5' is not an integer");
  refused({"--memory-budget-gib"}, "--memory-budget-gib: missing value");

  const std::string help = autoquant::help_text();
  for (const char* flag : {"--device", "--gpu-attention", "--activations", "--weight-cache-gib", "--memory-budget-gib",
                           "--micro-batch", "--profile-kernels"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
}

TEST_CASE("SHA-256 of the FIPS 180-4 test vectors") {
  autoquant::sha256 a;
  a.update("abc");
  CHECK(a.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  autoquant::sha256 b;
  b.update("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
  CHECK(b.hex() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("--dump-batches writes int64 [N, T] input_ids, attention_mask, labels that read back") {
  const std::vector<std::string> captions{"a b c", "d e", "f"};
  const auto encode = [](std::string_view text) {
    std::vector<std::int32_t> ids;
    for (const char c : text) ids.push_back(static_cast<std::int32_t>(c));
    return ids;
  };
  io::padding_options o;
  o.max_length = 6;
  const auto batches = io::make_text_calib_batches(captions, encode, 2, o);
  const autoquant::batch_tensors t = autoquant::stack_batches(batches);
  CHECK(t.rows == 3);
  CHECK(t.seq == 6);
  const fs::path dir = temp_dir("dump");
  write_file_atomic(dir / "b.safetensors", autoquant::render_batches(t));
  const safetensors_file file(dir / "b.safetensors", readable_dtypes);
  for (const auto& [key, values] : {std::pair{"input_ids", &t.input_ids}, std::pair{"attention_mask", &t.attention_mask},
                                    std::pair{"labels", &t.labels}}) {
    const tensor_view& view = file.at(key);
    CHECK(std::vector<std::int64_t>(view.shape.begin(), view.shape.end()) == std::vector<std::int64_t>{3, 6});
    CHECK(to_int64_vector(view) == *values);
  }
  CHECK(t.input_ids[0] == io::qwen3_pad_token_id);  // left padding
  CHECK(t.labels == t.input_ids);                    // the reference's labels: a copy of input_ids
  CHECK(autoquant::data_sha256(t).size() == 64);
  fs::remove_all(dir);
}

TEST_CASE("--dump-batches of image-caption batches writes each batch's tokens, pixels and grids") {
  // Two batches of different lengths and patch counts, as image-caption data gives them.
  std::vector<io::calib_batch> batches(2);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    io::calib_batch& b = batches[i];
    const std::int64_t seq = 5 + static_cast<std::int64_t>(i);
    b.batch_size = 1;
    b.seq_len = seq;
    for (std::int64_t t = 0; t < seq; ++t) {
      b.input_ids.push_back(static_cast<std::int32_t>(100 * i + t));
      b.attention_mask.push_back(1);
      b.labels.push_back(t == 0 ? io::ignore_label : static_cast<std::int32_t>(100 * i + t));
    }
    b.vision.rows = 4 * static_cast<std::int64_t>(i + 1);
    b.vision.cols = 3;
    for (std::int64_t k = 0; k < b.vision.rows * b.vision.cols; ++k) b.vision.pixel_values.push_back(0.25f * k - 1.0f);
    b.vision.grid_thw.push_back({1, 2, 2 * static_cast<std::int64_t>(i + 1)});
  }
  const fs::path dir = temp_dir("dump_images");
  write_file_atomic(dir / "b.safetensors", autoquant::render_image_batches(batches));
  const safetensors_file file(dir / "b.safetensors", readable_dtypes);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const io::calib_batch& b = batches[i];
    const std::string p = std::to_string(i) + ".";
    const tensor_view& ids = file.at(p + "input_ids");
    CHECK(std::vector<std::int64_t>(ids.shape.begin(), ids.shape.end()) == std::vector<std::int64_t>{1, b.seq_len});
    CHECK(to_int64_vector(ids) == std::vector<std::int64_t>(b.input_ids.begin(), b.input_ids.end()));
    CHECK(to_int64_vector(file.at(p + "labels"))[0] == b.input_ids[0]);  // the reference's form
    const tensor_view& pixels = file.at(p + "pixel_values");
    CHECK(std::vector<std::int64_t>(pixels.shape.begin(), pixels.shape.end()) ==
          std::vector<std::int64_t>{b.vision.rows, 3});
    CHECK(to_float_vector(pixels) == b.vision.pixel_values);
    CHECK(to_int64_vector(file.at(p + "image_grid_thw")) ==
          std::vector<std::int64_t>{1, 2, 2 * static_cast<std::int64_t>(i + 1)});
  }
  fs::remove_all(dir);
}

TEST_CASE("the first 16 bundled captions at seq 128 give ModelOpt's batches byte for byte and its data digest") {
  // benchmarks/modelopt/results/batches_small_s128.safetensors was written by ModelOpt's runner
  // (transformers tokenizer, padding_side left, max_length 128, labels = input_ids) and its
  // digest recorded in tiny_fp8_int8_b8.json; the same captions through aq must give both.
  const fs::path root(AQ_SOURCE_DIR);
  const io::tokenizer tok = io::tokenizer::from_file(root / "data" / "qwen3-tokenizer" / "tokenizer.json");
  io::padding_options o;
  o.max_length = 128;
  const auto batches = io::make_text_calib_batches(
      io::read_caption_lines(root / "data" / "captions" / "coco2017_captions_small.txt", 16),
      [&tok](std::string_view text) { return tok.encode(text); }, 8, o);
  const autoquant::batch_tensors t = autoquant::stack_batches(batches);
  CHECK(autoquant::data_sha256(t) == "b91844a13e79415ce2566890c5520cbc274d8652436ecd59f6f426e5c7b13280");
  const safetensors_file reference(root / "benchmarks" / "modelopt" / "results" / "batches_small_s128.safetensors",
                                   readable_dtypes);
  CHECK(to_int64_vector(reference.at("input_ids")) == t.input_ids);
  CHECK(to_int64_vector(reference.at("attention_mask")) == t.attention_mask);
  CHECK(to_int64_vector(reference.at("labels")) == t.labels);
}

TEST_CASE("bad inputs give one-line errors naming the file") {
  const fs::path dir = temp_dir("bad");
  std::ofstream(dir / "empty.txt") << "\n  \n";
  CHECK_THROWS_WITH_AS(io::read_caption_lines(dir / "empty.txt"), doctest::Contains("no non-empty captions"), aq::error);
  fs::create_directories(dir / "model");
  fs::copy_file(fs::path(AQ_TEST_FIXTURES) / "configs" / "qwen3_vl_4b_instruct.json", dir / "model" / "config.json");
  CHECK_THROWS_AS(safetensors_checkpoint(dir / "model"), aq::error);
  fs::remove_all(dir);
}

}  // namespace test_autoquant_driver
