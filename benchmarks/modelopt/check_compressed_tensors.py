#!/usr/bin/env python3
"""Loads a compressed-tensors checkpoint written by `aq-export --format compressed-tensors` with
transformers (AutoModelForImageTextToText, the compressed-tensors package installed) and compares
its logits with `aq-logits --recipes MANIFEST --state STATE` on the same ids.

  check_compressed_tensors.py --model OUT LOGITS.safetensors [LOGITS.safetensors ...] [--json F]
                              [--state STATE.safetensors]

Each LOGITS file is aq-logits output (input_ids and logits [T, vocab], fp32). Prints, per file and
overall, the relative error ||z_transformers - z_aq|| / ||z_aq|| (Frobenius) and the largest
absolute difference; the model runs in bf16 (--dtype float32 to separate bf16 rounding).

--state (the aq run's quantizer state) adds a per-module check of the static input quantization:
at every quantized Linear, on the very input compressed-tensors receives, its codes round(x /
input_scale) against aq's rne(x * (bound / amax)) with the state's amax, and the largest
difference of the dequantized values. End-to-end logits cannot check that part on a random
model: the two engines' activations differ in the last fp32 bits, enough to move a few inputs
across a rounding boundary, and the random model amplifies each such step.
"""
import argparse
import json
import sys

import torch


def aq_input_codes(x, amax, is_float):
    """aq's static input quantizer: code = rne(x * (bound / amax)) with bound / amax in fp32."""
    factor = torch.tensor(448.0 if is_float else 127.0, dtype=torch.float32) / amax
    y = x.float() * factor
    if is_float:
        return y.clamp(-448, 448).to(torch.float8_e4m3fn).float(), factor
    return torch.round(y).clamp(-128, 127), factor


def hook_input_quantization(model, state_path):
    """Compares compressed-tensors' input codes with aq's at every quantized Linear (totals)."""
    import compressed_tensors.quantization.lifecycle.forward as forward
    from safetensors.torch import load_file

    state = load_file(state_path)
    amax_of = {}
    for name, module in model.named_modules():
        key = name + ".input_quantizer._amax"
        if hasattr(module, "input_scale") and key in state:
            amax_of[id(module)] = state[key].float().reshape(())
    totals = {"modules": len(amax_of), "codes": 0, "differing_codes": 0, "max_rel_dequantized_diff": 0.0}
    original = forward.forward_quantize

    def checked(module, value, base_name, args):
        out = original(module, value, base_name, args)
        if base_name == "input" and id(module) in amax_of:
            amax = amax_of[id(module)]
            is_float = args.type == "float"
            scale = module.input_scale.float().reshape(())
            ct_codes = (value.float() / scale).clamp(-448, 448).to(torch.float8_e4m3fn).float() if is_float \
                else torch.round(value.float() / scale).clamp(-128, 127)
            codes, factor = aq_input_codes(value, amax, is_float)
            totals["codes"] += value.numel()
            totals["differing_codes"] += int((ct_codes != codes).sum())
            diff = ((out.float() - codes / factor).abs().max() / amax).item()
            totals["max_rel_dequantized_diff"] = max(totals["max_rel_dequantized_diff"], diff)
        return out

    forward.forward_quantize = checked
    return totals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("logits", nargs="+")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    ap.add_argument("--state")
    a = ap.parse_args()
    import transformers
    from safetensors.torch import load_file

    model = transformers.AutoModelForImageTextToText.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(a.device)
    model.eval()
    qc = getattr(model.config, "quantization_config", None)
    input_codes = hook_input_quantization(model, a.state) if a.state else None
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
    if input_codes is not None:
        report["static_inputs"] = input_codes
        print(f"static inputs: {input_codes['modules']} modules, {input_codes['differing_codes']} of "
              f"{input_codes['codes']} codes differ from aq's, max |dequantized difference| / amax "
              f"{input_codes['max_rel_dequantized_diff']:.3e}")
    print(f"overall rel err {report['rel_err']:.3e}, max |diff| {worst:.3e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
