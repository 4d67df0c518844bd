// cuDNN's fused SDPA (flash attention, forward and deterministic backward) behind aq's
// fused_attention_library interface: aq's one compiled unit, built where cuDNN's frontend headers
// are found (scripts/install-deps.sh) and linked into the CUDA programs. cuDNN itself is opened at
// run time (dlopen of libcudnn.so.9), so a program built with this unit still starts, and runs aq's
// own attention kernels, on a machine without cuDNN. Compiled by the host compiler only: the
// frontend's headers cost minutes under nvcc.
#include <cudnn_frontend.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "aq/backend/cuda/kernels/fused_attention_library.hpp"
#include "aq/core/error.hpp"

namespace cudnn_frontend {
// The handle the frontend's dynamic-loading shim resolves cuDNN's symbols from.
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend

namespace aq::cuda {
namespace {

namespace fe = cudnn_frontend;
using tensor_ptr = std::shared_ptr<fe::graph::Tensor_attributes>;

// Shorter segments stay on aq's kernels: there a plan build per new shape costs more than the
// faster kernel saves, and aq's kernels run short segments near their best.
constexpr int shortest_segment = 256;

// A [batch, heads, seq, dim] view of a token-major matrix with row stride ld, for inputs
// (token_major) and for the graph's outputs (set_token_major_output).
fe::graph::Tensor_attributes& with_token_major_layout(fe::graph::Tensor_attributes& t, const fused_attention_shape& s,
                                                      int heads, std::int64_t ld) {
  return t.set_dim({s.batch, heads, s.seq, s.head_dim}).set_stride({s.seq * ld, s.head_dim, ld, 1});
}

fe::graph::Tensor_attributes token_major(const char* name, const fused_attention_shape& s, int heads,
                                         std::int64_t ld) {
  fe::graph::Tensor_attributes t;
  t.set_name(name);
  return with_token_major_layout(t, s, heads, ld);
}

void set_token_major_output(const tensor_ptr& t, const fused_attention_shape& s, int heads, std::int64_t ld) {
  with_token_major_layout(t->set_output(true), s, heads, ld);
}

// lse as aq's kernels keep it, [heads, batch·seq] (in_place), or packed [batch, heads, seq] in a
// scratch buffer that is copied to and from it, for a cuDNN that takes only its own layout.
void set_lse_layout(const tensor_ptr& t, const fused_attention_shape& s, bool in_place) {
  const std::int64_t rows = static_cast<std::int64_t>(s.batch) * s.seq;
  t->set_dim({s.batch, s.heads, s.seq, 1}).set_data_type(fe::DataType_t::FLOAT);
  if (in_place) {
    t->set_stride({s.seq, rows, 1, 1});
  } else {
    t->set_stride({static_cast<std::int64_t>(s.heads) * s.seq, s.seq, 1, 1});
  }
}

std::shared_ptr<fe::graph::Graph> new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

struct forward_graph {
  std::shared_ptr<fe::graph::Graph> graph;
  tensor_ptr q, k, v, o, lse;
};

struct backward_graph {
  std::shared_ptr<fe::graph::Graph> graph;
  tensor_ptr q, k, v, o, d_o, lse, dq, dk, dv;
};

forward_graph make_forward(const fused_attention_shape& s, bool lse_in_place) {
  forward_graph f{new_graph(), {}, {}, {}, {}, {}};
  f.q = f.graph->tensor(token_major("q", s, s.heads, s.ld_q));
  f.k = f.graph->tensor(token_major("k", s, s.kv_heads, s.ld_kv));
  f.v = f.graph->tensor(token_major("v", s, s.kv_heads, s.ld_kv));
  auto options = fe::graph::SDPA_attributes().set_name("aq_sdpa").set_generate_stats(true).set_attn_scale(s.scale);
  if (s.causal) options.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  auto [o, lse] = f.graph->sdpa(f.q, f.k, f.v, options);
  set_token_major_output(o, s, s.heads, s.ld_q);
  lse->set_output(true);
  set_lse_layout(lse, s, lse_in_place);
  f.o = o;
  f.lse = lse;
  return f;
}

backward_graph make_backward(const fused_attention_shape& s, bool lse_in_place) {
  backward_graph b{new_graph(), {}, {}, {}, {}, {}, {}, {}, {}, {}};
  b.q = b.graph->tensor(token_major("q", s, s.heads, s.ld_q));
  b.k = b.graph->tensor(token_major("k", s, s.kv_heads, s.ld_kv));
  b.v = b.graph->tensor(token_major("v", s, s.kv_heads, s.ld_kv));
  b.o = b.graph->tensor(token_major("o", s, s.heads, s.ld_q));
  b.d_o = b.graph->tensor(token_major("d_o", s, s.heads, s.ld_q));
  b.lse = b.graph->tensor(fe::graph::Tensor_attributes().set_name("lse"));
  set_lse_layout(b.lse, s, lse_in_place);
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("aq_sdpa_backward")
                     .set_attn_scale(s.scale)
                     .set_deterministic_algorithm(true);
  if (s.causal) options.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT).set_diagonal_band_right_bound(0);
  auto [dq, dk, dv] = b.graph->sdpa_backward(b.q, b.k, b.v, b.o, b.d_o, b.lse, options);
  set_token_major_output(dq, s, s.heads, s.ld_q);
  set_token_major_output(dk, s, s.kv_heads, s.ld_kv);
  set_token_major_output(dv, s, s.kv_heads, s.ld_kv);
  b.dq = dq;
  b.dk = dk;
  b.dv = dv;
  return b;
}

void check(fe::error_t status, const char* what) {
  if (!status.is_good()) throw error(std::string("cuDNN attention: ") + what + ": " + status.get_message());
}

class cudnn_attention final : public fused_attention_library {
 public:
  const char* name() const override { return "cuDNN SDPA"; }

  std::string describe() override {
    std::lock_guard lock(mutex_);
    if (!open_library()) return "cuDNN 9 not found (libcudnn.so.9)";
    const std::size_t v = fe::detail::get_backend_version();
    return "cuDNN " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) +
           ", " + std::to_string(forward_calls_) + " forward and " + std::to_string(backward_calls_) +
           " backward calls, " + std::to_string(largest_workspace() >> 20) + " MiB workspace, opened in " +
           milliseconds(open_seconds_) + ", " + std::to_string(plans_built_) + " shape" + (plans_built_ == 1 ? "" : "s") +
           " planned in " + milliseconds(plan_seconds_) + (refusal_.empty() ? std::string() : "; last shape refused: " + refusal_);
  }

  void prepare(const fused_attention_shape* likely) override {
    if (likely != nullptr) {
      (void)accepts(*likely);
    } else {
      std::lock_guard lock(mutex_);
      (void)state();
    }
  }

  std::int64_t calls() override {
    std::lock_guard lock(mutex_);
    return forward_calls_ + backward_calls_;
  }

  bool accepts(const fused_attention_shape& s) override {
    if (s.seq < shortest_segment || s.head_dim % 8 != 0 || s.head_dim > 128) return false;
    std::lock_guard lock(mutex_);
    device_state* d = state();
    if (d == nullptr) return false;
    const key k = key_of(s);
    auto it = d->plans.find(k);
    if (it == d->plans.end()) {
      const auto t0 = std::chrono::steady_clock::now();
      it = d->plans.emplace(k, build(d->handle, s)).first;
      plan_seconds_ += seconds_since(t0);
      ++plans_built_;
    }
    if (it->second == nullptr) return false;
    if (s.workspace_limit > 0 && it->second->workspace_bytes > s.workspace_limit) {
      refusal_ = "workspace of " + std::to_string(it->second->workspace_bytes >> 20) + " MiB over the limit of " +
                 std::to_string(s.workspace_limit >> 20) + " MiB";
      return false;
    }
    return true;
  }

  void forward(const fused_attention_shape& s, const void* q, const void* k, const void* v, void* o, float* lse,
               cudaStream_t stream) override {
    std::lock_guard lock(mutex_);
    device_state* d = state();
    shape_plans& p = *d->plans.at(key_of(s));
    forward_graph& f = p.forward;
    float* stats = p.lse_in_place ? lse : scratch(*d, s, stream);
    std::unordered_map<tensor_ptr, void*> pack{{f.q, const_cast<void*>(q)}, {f.k, const_cast<void*>(k)},
                                               {f.v, const_cast<void*>(v)}, {f.o, o}, {f.lse, stats}};
    run(*d, *f.graph, pack, stream);
    if (!p.lse_in_place) copy_lse(s, stats, lse, false, stream);
    ++forward_calls_;
  }

  void backward(const fused_attention_shape& s, const void* q, const void* k, const void* v, const void* o,
                const float* lse, const void* d_o, void* dq, void* dk, void* dv, cudaStream_t stream) override {
    std::lock_guard lock(mutex_);
    device_state* d = state();
    shape_plans& p = *d->plans.at(key_of(s));
    backward_graph& b = p.backward;
    float* stats = const_cast<float*>(lse);
    if (!p.lse_in_place) {
      stats = scratch(*d, s, stream);
      copy_lse(s, lse, stats, true, stream);
    }
    std::unordered_map<tensor_ptr, void*> pack{
        {b.q, const_cast<void*>(q)},     {b.k, const_cast<void*>(k)},   {b.v, const_cast<void*>(v)},
        {b.o, const_cast<void*>(o)},     {b.d_o, const_cast<void*>(d_o)}, {b.lse, stats},
        {b.dq, dq},                      {b.dk, dk},                    {b.dv, dv}};
    run(*d, *b.graph, pack, stream);
    ++backward_calls_;
  }

 private:
  using key = std::tuple<int, int, int, int, int, std::int64_t, std::int64_t, std::uint32_t, bool>;

  struct shape_plans {
    forward_graph forward;
    backward_graph backward;
    bool lse_in_place = true;
    std::int64_t workspace_bytes = 0;  // the larger direction's, plus the packed lse
  };

  // A device buffer that grows stream-ordered (so memory still in use by earlier work on the
  // stream is not freed under it) and keeps its largest size for the program's life.
  struct device_scratch {
    void* data = nullptr;
    std::int64_t bytes = 0;
    void* reserve(std::int64_t want, cudaStream_t stream) {
      if (want <= bytes) return data;
      if (data != nullptr && cudaFreeAsync(data, stream) != cudaSuccess) throw error("cuDNN attention: cudaFreeAsync failed");
      data = nullptr;
      bytes = 0;
      if (cudaMallocAsync(&data, static_cast<std::size_t>(want), stream) != cudaSuccess) {
        throw error("cuDNN attention: out of device memory for " + std::to_string(want) + " bytes of workspace");
      }
      bytes = want;
      return data;
    }
  };

  struct device_state {
    cudnnHandle_t handle = nullptr;
    std::map<key, std::unique_ptr<shape_plans>> plans;  // nullptr: cuDNN does not run this shape
    device_scratch workspace, lse;
  };

  static float* scratch(device_state& d, const fused_attention_shape& s, cudaStream_t stream) {
    const std::int64_t floats = static_cast<std::int64_t>(s.batch) * s.heads * s.seq;
    return static_cast<float*>(d.lse.reserve(floats * static_cast<std::int64_t>(sizeof(float)), stream));
  }

  std::int64_t largest_workspace() const {
    std::int64_t bytes = 0;
    for (const auto& [device, d] : devices_) bytes = std::max(bytes, d.workspace.bytes + d.lse.bytes);
    return bytes;
  }

  static key key_of(const fused_attention_shape& s) {
    std::uint32_t scale_bits = 0;
    std::memcpy(&scale_bits, &s.scale, sizeof scale_bits);
    return {s.batch, s.seq, s.heads, s.kv_heads, s.head_dim, s.ld_q, s.ld_kv, scale_bits, s.causal};
  }

  // Both directions at once, so a shape runs both on cuDNN or both on aq's kernels (each reads
  // the lse the other wrote): lse in place first, else through the packed scratch layout.
  // AQ_CUDNN_PACKED_LSE=1 skips the in-place layout (tests run the scratch path with it).
  std::unique_ptr<shape_plans> build(cudnnHandle_t handle, const fused_attention_shape& s) {
    const char* packed_only = std::getenv("AQ_CUDNN_PACKED_LSE");
    const bool try_in_place = packed_only == nullptr || std::string(packed_only) != "1";
    std::string why;  // the last layout's refusal, kept only if no layout builds
    for (const bool in_place : {true, false}) {
      if (in_place && !try_in_place) continue;
      try {
        auto p = std::make_unique<shape_plans>(
            shape_plans{make_forward(s, in_place), make_backward(s, in_place), in_place, 0});
        fe::error_t status = p->forward.graph->build(handle, {fe::HeurMode_t::A});
        if (status.is_good()) status = p->backward.graph->build(handle, {fe::HeurMode_t::A});
        std::int64_t forward_bytes = 0, backward_bytes = 0;
        if (status.is_good()) status = p->forward.graph->get_workspace_size(forward_bytes);
        if (status.is_good()) status = p->backward.graph->get_workspace_size(backward_bytes);
        if (status.is_good()) {
          const std::int64_t lse_bytes =
              in_place ? 0 : static_cast<std::int64_t>(s.batch) * s.heads * s.seq * static_cast<std::int64_t>(sizeof(float));
          p->workspace_bytes = std::max(forward_bytes, backward_bytes) + lse_bytes;
          return p;
        }
        why = status.get_message();
      } catch (const std::exception& e) {
        why = e.what();
      }
    }
    refusal_ = why;
    return nullptr;
  }

  // Copies lse between aq's [heads, batch·seq] and the packed [batch, heads, seq]: a strided
  // copy per batch row.
  static void copy_lse(const fused_attention_shape& s, const float* from, float* to, bool to_packed,
                       cudaStream_t stream) {
    const std::size_t seq_bytes = static_cast<std::size_t>(s.seq) * sizeof(float);
    const std::size_t rows_bytes = static_cast<std::size_t>(s.batch) * seq_bytes;
    for (int b = 0; b < s.batch; ++b) {
      const std::size_t packed = static_cast<std::size_t>(b) * s.heads * s.seq, ours = static_cast<std::size_t>(b) * s.seq;
      const cudaError_t e = to_packed ? cudaMemcpy2DAsync(to + packed, seq_bytes, from + ours, rows_bytes, seq_bytes,
                                                          s.heads, cudaMemcpyDeviceToDevice, stream)
                                      : cudaMemcpy2DAsync(to + ours, rows_bytes, from + packed, seq_bytes, seq_bytes,
                                                          s.heads, cudaMemcpyDeviceToDevice, stream);
      if (e != cudaSuccess) throw error(std::string("cuDNN attention: lse copy: ") + cudaGetErrorString(e));
    }
  }

  // This device's handle, opening cuDNN on first use; nullptr when it cannot be opened.
  device_state* state() {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return nullptr;
    auto it = devices_.find(device);
    if (it != devices_.end()) return it->second.handle != nullptr ? &it->second : nullptr;
    device_state& d = devices_[device];
    const auto t0 = std::chrono::steady_clock::now();
    if (!open_library()) return nullptr;
    cudnnHandle_t handle = nullptr;
    try {
      if (fe::detail::create_handle(&handle) != CUDNN_STATUS_SUCCESS) return nullptr;
    } catch (const std::exception&) {
      return nullptr;
    }
    d.handle = handle;
    open_seconds_ += seconds_since(t0);
    return &d;
  }

  // cuDNN 9 (its graph API carries the fused SDPA); opened once per program.
  static bool open_library() {
    static const bool opened = [] {
      fe::cudnn_dlhandle = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
      if (fe::cudnn_dlhandle == nullptr) return false;
      try {
        return fe::detail::get_backend_version() >= 90000;
      } catch (const std::exception&) {
        return false;
      }
    }();
    return opened;
  }

  static void run(device_state& d, fe::graph::Graph& graph, std::unordered_map<tensor_ptr, void*>& pack,
                  cudaStream_t stream) {
    std::int64_t bytes = 0;
    check(graph.get_workspace_size(bytes), "workspace size");
    void* workspace = d.workspace.reserve(bytes, stream);
    if (fe::detail::set_stream(d.handle, stream) != CUDNN_STATUS_SUCCESS) throw error("cuDNN attention: set stream");
    check(graph.execute(d.handle, pack, workspace), "execute");
  }

  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  static std::string milliseconds(double seconds) { return std::to_string(std::lround(seconds * 1e3)) + " ms"; }

  std::mutex mutex_;
  std::map<int, device_state> devices_;
  double open_seconds_ = 0.0;  // loading cuDNN and opening it on each device
  double plan_seconds_ = 0.0;  // building the plans of each new shape (both directions)
  int plans_built_ = 0;
  std::string refusal_;  // why cuDNN refused the last shape it refused
  std::int64_t forward_calls_ = 0;
  std::int64_t backward_calls_ = 0;
};

cudnn_attention library_instance;

const bool registered = [] {
  registered_fused_attention_library() = &library_instance;
  return true;
}();

}  // namespace
}  // namespace aq::cuda
