#!/usr/bin/env python3
"""Loads a compressed-tensors checkpoint written by `aq-export --format compressed-tensors` with
transformers (AutoModelForImageTextToText, the compressed-tensors package installed) and compares
its logits with `aq-logits --recipes MANIFEST --state STATE` on the same ids.

  check_compressed_tensors.py --model OUT LOGITS.safetensors [LOGITS.safetensors ...] [--json F]

Each LOGITS file is aq-logits output (input_ids and logits [T, vocab], fp32). Prints, per file and
overall, the relative error ||z_transformers - z_aq|| / ||z_aq|| (Frobenius) and the largest
absolute difference; the model runs in bf16 (--dtype float32 to separate bf16 rounding).
"""
import argparse
import json
import sys

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("logits", nargs="+")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    a = ap.parse_args()
    import transformers
    from safetensors.torch import load_file

    model = transformers.AutoModelForImageTextToText.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(a.device)
    model.eval()
    qc = getattr(model.config, "quantization_config", None)
    report = {"model": a.model, "dtype": a.dtype, "transformers": transformers.__version__, "files": []}
    num = den = 0.0
    worst = 0.0
    for path in a.logits:
        t = load_file(path)
        ids = t["input_ids"].to(torch.int64).reshape(1, -1).to(a.device)
        ref = t["logits"].double()
        with torch.no_grad():
            z = model(input_ids=ids).logits[0].double().cpu()
        d = (z - ref)
        rel = (d.norm() / ref.norm()).item()
        # Positions whose logits differ beyond fp32 noise: a quantizer rounding that flipped on a
        # tie shows up as one such position and everything after it that attends to it.
        row_rel = d.norm(dim=-1) / ref.norm(dim=-1)
        diverged = [int(i) for i in (row_rel > 1e-4).nonzero().flatten()]
        num += d.norm().item() ** 2
        den += ref.norm().item() ** 2
        worst = max(worst, d.abs().max().item())
        report["files"].append({"file": path, "tokens": int(ids.shape[1]), "rel_err": rel, "max_abs": d.abs().max().item(),
                                "argmax_agree": float((z.argmax(-1) == ref.argmax(-1)).double().mean().item()),
                                "diverged_positions": diverged})
        print(f"{path}: {ids.shape[1]} tokens, rel err {rel:.3e}, max |diff| {d.abs().max().item():.3e}, "
              f"positions beyond 1e-4: {diverged}")
    report["rel_err"] = (num ** 0.5) / (den ** 0.5)
    report["max_abs"] = worst
    report["quantization_config_loaded"] = qc is not None
    print(f"overall rel err {report['rel_err']:.3e}, max |diff| {worst:.3e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
