#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes bench_cuda_attention times (Qwen3-VL-4B
text: 32 query / 8 kv heads x 128, causal, bf16), forward and backward, per backend (flash,
cuDNN, memory-efficient), so that aq's kernels and the peer sit in one table from one machine.

  bench_torch_sdpa.py [--reps 20] [--shapes 8x512,2x2048,1x8192]

FLOP convention as bench_cuda_attention's (FlashAttention's): forward 4*B*H*T^2*D / 2 for causal,
backward 2.5x the forward. K and V are repeated to 32 heads outside the timed region (the flash
backend takes no GQA), which the kernels read as they would the grouped heads. Times are medians
of CUDA-event timings.
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shapes", default="8x512,2x2048,1x8192")
    a = ap.parse_args()
    heads, dim = 32, 128
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"{'shape':<10} {'backend':<16} {'pass':<9} {'ms':>9} {'TFLOP/s':>9}")
    for shape in a.shapes.split(","):
        batch, tokens = (int(x) for x in shape.split("x"))
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v, d_o = (torch.randn(batch, heads, tokens, dim, device="cuda", dtype=torch.bfloat16, generator=g)
                        for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        fwd_flop = 4.0 * batch * heads * tokens * tokens * dim * 0.5
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("mem-efficient", SDPBackend.EFFICIENT_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the graph each backward reuses

                    def forward():
                        with torch.no_grad():
                            F.scaled_dot_product_attention(q, k, v, is_causal=True)

                    def backward():
                        torch.autograd.grad(out, (q, k, v), d_o, retain_graph=True)

                    forward()
                    backward()
                    t_f, t_b = median_ms(forward, a.reps), median_ms(backward, a.reps)
            except RuntimeError as e:
                print(f"{shape:<10} {name:<16} unavailable: {str(e).splitlines()[0][:80]}")
                continue
            for pass_name, ms, flop in (("forward", t_f, fwd_flop), ("backward", t_b, 2.5 * fwd_flop),
                                        ("fwd+bwd", t_f + t_b, 3.5 * fwd_flop)):
                print(f"{shape:<10} {name:<16} {pass_name:<9} {ms:9.3f} {flop / ms / 1e9:9.1f}")


if __name__ == "__main__":
    main()
