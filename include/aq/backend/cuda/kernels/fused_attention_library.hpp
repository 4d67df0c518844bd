// A vendor library's fused scaled-dot-product attention (cuDNN's, from src/cudnn_attention.cpp),
// which attention.cuh hands a call to before its own kernels. Header-only code cannot depend on
// it: the compiled unit registers itself here at start-up when it is linked in, and a build
// without it (or a machine without the library) runs aq's own kernels with the same semantics.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace aq::cuda {

// One attention call over `batch` equal segments of `seq` rows each, stored back to back in
// token-major matrices ([batch·seq, heads·head_dim], row strides in elements): no key mask, so
// every query row has at least one allowed key. lse is [heads, batch·seq] floats, as in
// attention_forward.
struct fused_attention_shape {
  int batch = 0;
  int seq = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  std::int64_t ld_q = 0;   // q, o, dO and dQ
  std::int64_t ld_kv = 0;  // k, v, dK and dV
  float scale = 1.0f;
  bool causal = false;
  // Device bytes the library may hold for this shape (its workspace; 0: no limit): a shape that
  // needs more runs on aq's kernels. cuDNN's deterministic backward grows with seq² (4.1 GiB at
  // 1 × 8,192 tokens, 32 heads × 128).
  std::int64_t workspace_limit = 0;
};

class fused_attention_library {
 public:
  virtual ~fused_attention_library() = default;
  virtual const char* name() const = 0;
  // What it is and did, for a run's summary: its version and how many calls it ran, or why it
  // runs none (library not found, too old).
  virtual std::string describe() = 0;
  // Forward plus backward calls it has run so far.
  virtual std::int64_t calls() = 0;
  // Opens the library on the current device and, given `likely`, plans that shape (as accepts
  // would) ahead of the first call, e.g. on a thread beside the weights' upload: a first plan on a
  // fresh machine waits ~2 s for the driver to compile the library's kernels (its cache keeps
  // them). Safe to call from any thread; failures are left to accepts().
  virtual void prepare(const fused_attention_shape* likely = nullptr) { (void)likely; }
  // Whether the library runs this shape (loaded, supported, plans built); false means the caller
  // runs its own kernels, for the forward and for its backward alike.
  virtual bool accepts(const fused_attention_shape& s) = 0;
  // bf16 data; run on `stream`. Only called after accepts(s) returned true; throws aq::error when
  // the library fails at run time.
  virtual void forward(const fused_attention_shape& s, const void* q, const void* k, const void* v, void* o,
                       float* lse, cudaStream_t stream) = 0;
  // Deterministic: the same inputs give the same bits.
  virtual void backward(const fused_attention_shape& s, const void* q, const void* k, const void* v,
                        const void* o, const float* lse, const void* d_o, void* dq, void* dk, void* dv,
                        cudaStream_t stream) = 0;
};

// The registered library, or nullptr (one per program; set before main by the compiled unit).
inline fused_attention_library*& registered_fused_attention_library() {
  static fused_attention_library* library = nullptr;
  return library;
}

}  // namespace aq::cuda
