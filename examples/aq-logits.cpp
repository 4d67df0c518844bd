// aq-logits: runs the CPU Qwen3-VL text decoder on one token sequence, forward and backward of
// the mean LM loss (labels = ids), and writes logits, loss and optionally every quantizable
// linear's input, output and output gradient to a safetensors file (fp32) for comparison.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <aq/io/hf_config.hpp>
#include <aq/io/safetensors.hpp>
#include <aq/io/safetensors_writer.hpp>
#include <aq/model/qwen3_vl/checkpoint_source.hpp>
#include <aq/model/qwen3_vl/text_model.hpp>

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: aq-logits --model DIR --ids \"1 2 3\" --out F.safetensors [--dump-linears] [--sdpa]\n"
               "  Forward + backward of the mean next-token loss (labels = ids) with the CPU fp32 model.\n"
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
  std::string model_dir, ids_text, out_path;
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
  if (model_dir.empty() || ids_text.empty() || out_path.empty()) {
    usage(stderr);
    return 2;
  }
  try {
    const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model_dir);
    const aq::safetensors_checkpoint checkpoint(model_dir);
    const aq::qwen3_vl::text_weights weights =
        aq::qwen3_vl::load_text_weights(cfg, aq::qwen3_vl::checkpoint_weight_source(checkpoint));
    const aq::qwen3_vl::text_model model(cfg, weights);

    aq::qwen3_vl::text_batch batch;
    batch.input_ids = parse_ids(ids_text);
    batch.batch = 1;
    batch.seq = static_cast<std::int64_t>(batch.input_ids.size());
    batch.attention_mask.assign(batch.input_ids.size(), 1);
    batch.labels = batch.input_ids;

    aq::safetensors_writer writer;
    dump_observer observer(&writer);
    aq::qwen3_vl::run_options options;
    options.masked_rows = sdpa ? aq::cpu::masked_row_policy::zero : aq::cpu::masked_row_policy::attend_all;
    const aq::qwen3_vl::text_result result = model.run(batch, options, dump ? &observer : nullptr);
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
