// aq-logits: runs the CPU Qwen3-VL model on one sequence (token ids, or text through the model's
// tokenizer, optionally after images), forward and backward of the mean LM loss (labels = ids),
// and writes logits, loss and optionally every quantizable module's input, output and output
// gradient to a safetensors file (fp32) for comparison with a reference.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <aq/io/hf_config.hpp>
#include <aq/io/image.hpp>
#include <aq/io/image_preprocess.hpp>
#include <aq/io/safetensors.hpp>
#include <aq/io/safetensors_writer.hpp>
#include <aq/io/tokenizer.hpp>
#include <aq/model/qwen3_vl/checkpoint_source.hpp>
#include <aq/model/qwen3_vl/parameters.hpp>
#include <aq/model/qwen3_vl/vl_model.hpp>

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: aq-logits --model DIR (--ids \"1 2 3\" | --text T) [--image F]... --out F.safetensors\n"
               "                 [--dump-linears] [--sdpa] [--min-pixels N] [--max-pixels N]\n"
               "  Forward + backward of the mean next-token loss (labels = ids) with the CPU fp32 model.\n"
               "  --text is encoded with DIR/tokenizer.json (no chat template, no special tokens added).\n"
               "  Each --image is preprocessed as the Qwen3-VL processor does and placed before the text as\n"
               "  <|vision_start|> <|image_pad|> x N <|vision_end|>; pixel_values, image_grid_thw\n"
               "  and input_ids (as F32, exact) are written too.\n"
               "  Writes logits [T, vocab] and loss [1]; --dump-linears adds <module>.input/.output/.grad_output\n"
               "  as [tokens, features]. --sdpa: fully masked query rows give zeros (torch SDPA) instead of\n"
               "  attending uniformly (eager); irrelevant without padding.\n");
}

// Copies the (contiguous-row) views of every linear call into the writer.
struct dump_observer : aq::qwen3_vl::linear_observer {
  aq::safetensors_writer* writer;
  explicit dump_observer(aq::safetensors_writer* w) : writer(w) {}
  void put(std::string_view name, const char* suffix, const aq::const_matrix_view& m) {
    std::vector<float> values;
    values.reserve(static_cast<std::size_t>(m.rows * m.cols));
    for (std::int64_t r = 0; r < m.rows; ++r) values.insert(values.end(), m.row(r), m.row(r) + m.cols);
    writer->add(std::string(name) + suffix, {m.rows, m.cols}, std::span<const float>(values));
  }
  void on_forward(const aq::qwen3_vl::linear_call& c) override {
    put(c.name, ".input", c.input);
    put(c.name, ".output", c.output);
  }
  void on_backward(const aq::qwen3_vl::linear_call& c) override { put(c.name, ".grad_output", c.grad_output); }
};

std::vector<std::int64_t> parse_ids(const std::string& text) {
  std::vector<std::int64_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0') throw aq::error("--ids: '" + word + "' is not an integer token id");
    ids.push_back(v);
  }
  if (ids.empty()) throw aq::error("--ids: no token ids given");
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, ids_text, text, out_path, min_pixels, max_pixels;
  std::vector<std::string> image_paths;
  bool dump = false;
  bool sdpa = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string& into) {
      if (i + 1 >= argc) {
        usage(stderr);
        std::exit(2);
      }
      into = argv[++i];
    };
    if (arg == "--model") {
      value(model_dir);
    } else if (arg == "--ids") {
      value(ids_text);
    } else if (arg == "--text") {
      value(text);
    } else if (arg == "--image") {
      image_paths.emplace_back();
      value(image_paths.back());
    } else if (arg == "--min-pixels") {
      value(min_pixels);
    } else if (arg == "--max-pixels") {
      value(max_pixels);
    } else if (arg == "--out") {
      value(out_path);
    } else if (arg == "--dump-linears") {
      dump = true;
    } else if (arg == "--sdpa") {
      sdpa = true;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "aq-logits: unknown argument %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (model_dir.empty() || out_path.empty() || ids_text.empty() == text.empty()) {
    usage(stderr);
    return 2;
  }
  try {
    const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model_dir);
    const aq::safetensors_checkpoint checkpoint(model_dir);
    aq::qwen3_vl::check_parameters(cfg, checkpoint);  // every tensor named and shaped as the config says
    const aq::qwen3_vl::text_weights weights =
        aq::qwen3_vl::load_text_weights(cfg, aq::qwen3_vl::checkpoint_weight_source(checkpoint));
    aq::qwen3_vl::vision_weights vision_weights;
    if (!image_paths.empty()) {
      vision_weights = aq::qwen3_vl::load_vision_weights(cfg, aq::qwen3_vl::checkpoint_weight_source(checkpoint));
    }
    const aq::qwen3_vl::vl_model model(cfg, weights, vision_weights);

    aq::qwen3_vl::text_batch batch;
    std::vector<std::int64_t> body;
    if (!text.empty()) {
      const aq::io::tokenizer tok = aq::io::tokenizer::from_file(model_dir);
      for (const std::uint32_t id : tok.encode(text)) body.push_back(id);
    } else {
      body = parse_ids(ids_text);
    }
    aq::qwen3_vl::image_batch images;
    aq::safetensors_writer writer;
    if (!image_paths.empty()) {
      aq::io::qwen3_vl_image_options o;
      o.patch_size = static_cast<int>(cfg.vision.patch_size);
      o.temporal_patch_size = static_cast<int>(cfg.vision.temporal_patch_size);
      o.merge_size = static_cast<int>(cfg.vision.spatial_merge_size);
      if (!min_pixels.empty()) o.min_pixels = std::stoll(min_pixels);
      if (!max_pixels.empty()) o.max_pixels = std::stoll(max_pixels);
      std::vector<aq::io::image_rgb8> decoded;
      for (const std::string& path : image_paths) decoded.push_back(aq::io::load_image(path));
      const aq::io::vision_inputs vi = aq::io::preprocess_images(decoded, o);
      images.pixel_values = aq::tensor({vi.rows, vi.cols});
      images.pixel_values.storage() = vi.pixel_values;
      std::vector<float> grid_values;  // small integers, exact in F32
      for (const auto& g : vi.grid_thw) {
        images.grids.push_back(g);
        for (const std::int64_t v : g) grid_values.push_back(static_cast<float>(v));
        batch.input_ids.push_back(cfg.vision_start_token_id);
        batch.input_ids.insert(batch.input_ids.end(),
                               static_cast<std::size_t>(aq::io::image_token_count(g, o.merge_size)), cfg.image_token_id);
        batch.input_ids.push_back(cfg.vision_end_token_id);
      }
      writer.add("pixel_values", {vi.rows, vi.cols}, std::span<const float>(vi.pixel_values));
      writer.add("image_grid_thw", {static_cast<std::int64_t>(vi.grid_thw.size()), 3},
                 std::span<const float>(grid_values));
    }
    batch.input_ids.insert(batch.input_ids.end(), body.begin(), body.end());
    batch.batch = 1;
    batch.seq = static_cast<std::int64_t>(batch.input_ids.size());
    batch.attention_mask.assign(batch.input_ids.size(), 1);
    batch.labels = batch.input_ids;

    dump_observer observer(&writer);
    aq::qwen3_vl::run_options options;
    options.masked_rows = sdpa ? aq::cpu::masked_row_policy::zero : aq::cpu::masked_row_policy::attend_all;
    const aq::qwen3_vl::text_result result =
        model.run(batch, image_paths.empty() ? nullptr : &images, options, dump ? &observer : nullptr);
    std::vector<float> id_values(batch.input_ids.begin(), batch.input_ids.end());  // ids < 2^24: exact in F32
    writer.add("input_ids", {batch.seq}, std::span<const float>(id_values));
    writer.add("logits", {batch.seq, cfg.text.vocab_size}, std::span<const float>(result.logits.storage()));
    const float loss = static_cast<float>(result.loss);
    writer.add("loss", {1}, std::span<const float>(&loss, 1));
    writer.write(out_path);
    std::printf("tokens %lld, targets %lld, loss %.9g -> %s\n", static_cast<long long>(batch.seq),
                static_cast<long long>(result.targets), result.loss, out_path.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aq-logits: %s\n", e.what());
    return 1;
  }
}
