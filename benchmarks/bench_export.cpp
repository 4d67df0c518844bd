// Export timings: `write_export` of a fixed mix over a real-layout checkpoint, for both layouts,
// on one thread and on all, with the peak anonymous memory beyond the input mapping (sampled
// from /proc/self/status). The mix quantizes every decoder layer: q/k/v fp8_e4m3, o_proj
// int8_w8a8, gate/up int8_w8a8 in odd and w4a16 in even layers, down_proj w4a16; the vision
// tower and lm_head stay unquantized. Amax are the weights' own (per slot), inputs' 4.0.
//
//   bench_export --model DIR [--out DIR] [--threads N] [--format modelopt|compressed-tensors]
//                [--keep-mix]
//
// DIR is any Qwen3-VL checkpoint (benchmarks/modelopt/make_random_qwen3_vl.py writes random
// ones of the real shapes); --out is where the exports are written (default: DIR's parent,
// removed afterwards); --threads the parallel run's threads (default: all); --format one layout
// only (default: both); --keep-mix keeps the mix (OUT/bench_export.work/map.json and
// state.safetensors) for timing aq-export itself.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "aq/core/thread_pool.hpp"
#include "aq/export/export_checkpoint.hpp"
#include "aq/io/checkpoint/safetensors_writer.hpp"
#include "aq/model/qwen3_vl/config_json.hpp"
#include "aq/model/qwen3_vl/modules.hpp"
#include "aq/quant/recipes.hpp"
#include "cli/export_run.hpp"

namespace {

namespace fs = std::filesystem;
using aq::hf_export::checkpoint_layout;

// RssAnon of this process in bytes.
std::uint64_t anonymous_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    std::uint64_t kib = 0;
    if (key == "RssAnon:" && status >> kib) return kib * 1024;
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

// The peak of anonymous_bytes() while it lives, sampled every 2 ms.
class anonymous_peak {
 public:
  anonymous_peak() : sampler_([this] {
      while (!stop_) {
        peak_ = std::max<std::uint64_t>(peak_, anonymous_bytes());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }) {}
  std::uint64_t stop() {
    stop_ = true;
    sampler_.join();
    return peak_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> peak_{0};
  std::thread sampler_;
};

std::string recipe_of(const std::string& name) {
  using namespace aq::recipes;
  const auto layer_start = name.find("layers.") + 7;
  const int layer = std::stoi(name.substr(layer_start));
  if (name.ends_with("q_proj") || name.ends_with("k_proj") || name.ends_with("v_proj"))
    return std::string(fp8_e4m3::name);
  if (name.ends_with("down_proj")) return std::string(w4a16::name);
  if (name.ends_with("gate_proj") || name.ends_with("up_proj"))
    return std::string(layer % 2 == 1 ? int8_w8a8::name : w4a16::name);
  return std::string(int8_w8a8::name);
}

// max |w| over each slot of `slot` consecutive elements.
std::vector<float> slot_amax(const std::vector<float>& w, std::size_t slot) {
  std::vector<float> amax(w.size() / slot, 0.0f);
  for (std::size_t i = 0; i < w.size(); ++i) amax[i / slot] = std::max(amax[i / slot], std::fabs(w[i]));
  return amax;
}

// Writes the recipe map and the state of the mix into `dir`.
void write_mix(const fs::path& model, const fs::path& dir) {
  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(model);
  const aq::safetensors_checkpoint checkpoint(model, aq::hf_export::any_safetensors_dtype);
  aq::safetensors_writer state;
  std::string map = "{";
  for (const aq::quantizable_module& m : aq::qwen3_vl::text_quantizable_modules(cfg)) {
    if (m.name.find(".layers.") == std::string::npos) continue;
    const std::string recipe = recipe_of(m.name);
    map += std::string(map.size() > 1 ? ",\n" : "\n") + "  \"" + m.name + "\": \"" + recipe + "\"";
    const std::vector<float> w = aq::to_float_vector(checkpoint.at(m.name + ".weight"));
    const std::int64_t rows = m.weight_shape[0], cols = m.weight_shape[1];
    std::vector<float> amax;
    std::vector<std::int64_t> shape;
    if (recipe == aq::recipes::fp8_e4m3::name) {
      amax = slot_amax(w, w.size());
    } else if (recipe == aq::recipes::w4a16::name) {
      amax = slot_amax(w, 128);
      shape = {rows * cols / 128, 1};
    } else {
      amax = slot_amax(w, static_cast<std::size_t>(cols));
      shape = {rows, 1};
    }
    state.add(m.name + ".weight_quantizer._amax", shape, std::span<const float>(amax));
    if (recipe != aq::recipes::w4a16::name) {
      const float input = 4.0f;
      state.add(m.name + ".input_quantizer._amax", {}, std::span<const float>(&input, 1));
    }
  }
  map += "\n}\n";
  std::ofstream(dir / "map.json") << map;
  state.write(dir / "state.safetensors");
}

struct measurement {
  double seconds = 0;
  std::uint64_t peak_anonymous = 0;
  std::uint64_t written = 0;
};

measurement time_export(const aq::autoquant::export_options& o, unsigned threads) {
  const aq::qwen3_vl::config cfg = aq::read_qwen3_vl_config(o.model_dir);
  const aq::hf_export::export_plan plan = aq::autoquant::plan_export(o, cfg);
  const aq::safetensors_checkpoint checkpoint(o.model_dir, aq::hf_export::any_safetensors_dtype);
  fs::remove_all(o.output_dir);
  fs::create_directories(o.output_dir);
  aq::thread_pool pool(threads);
  const std::uint64_t before = anonymous_bytes();
  anonymous_peak peak;
  const auto t0 = std::chrono::steady_clock::now();
  aq::hf_export::write_export(o.model_dir, checkpoint, plan, o.output_dir, pool);
  const auto t1 = std::chrono::steady_clock::now();
  measurement m;
  m.seconds = std::chrono::duration<double>(t1 - t0).count();
  const std::uint64_t highest = peak.stop();
  m.peak_anonymous = highest - std::min(before, highest);
  for (const auto& entry : fs::directory_iterator(o.output_dir)) m.written += entry.file_size();
  fs::remove_all(o.output_dir);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, out, only;
  bool keep_mix = false;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--keep-mix") {
      keep_mix = true;
      continue;
    }
    if (i + 1 == argc) break;
    if (flag == "--model") model = argv[i + 1];
    if (flag == "--out") out = argv[i + 1];
    if (flag == "--format") only = argv[i + 1];
    if (flag == "--threads") threads = static_cast<unsigned>(std::stoul(argv[i + 1]));
    ++i;
  }
  if (model.empty()) {
    std::fprintf(stderr,
                 "usage: bench_export --model DIR [--out DIR] [--threads N] [--format modelopt|compressed-tensors] "
                 "[--keep-mix]\n");
    return 2;
  }
  const fs::path work = (out.empty() ? fs::path(model).parent_path() : fs::path(out)) / "bench_export.work";
  fs::create_directories(work);
  write_mix(model, work);
  std::printf("| layout | threads | wall s | written GB | GB/s | peak anonymous MiB | vs 1 thread |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const checkpoint_layout layout : {checkpoint_layout::modelopt, checkpoint_layout::compressed_tensors}) {
    if (!only.empty() && only != aq::hf_export::layout_name(layout)) continue;
    aq::autoquant::export_options o;
    o.model_dir = model;
    o.recipes = (work / "map.json").string();
    o.state = (work / "state.safetensors").string();
    o.output_dir = (work / "out").string();
    o.layout = layout;
    double single = 0;
    for (const unsigned t : {1u, threads}) {
      const measurement m = time_export(o, t);
      if (t == 1) single = m.seconds;
      std::printf("| %s | %u | %.2f | %.2f | %.2f | %.0f | %.2fx |\n",
                  std::string(aq::hf_export::layout_name(layout)).c_str(), t, m.seconds, m.written / 1e9,
                  m.written / 1e9 / m.seconds, m.peak_anonymous / 1048576.0, single / m.seconds);
      std::fflush(stdout);
      if (threads == 1) break;
    }
  }
  if (!keep_mix) fs::remove_all(work);
  return 0;
}
