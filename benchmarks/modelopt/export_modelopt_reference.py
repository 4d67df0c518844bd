#!/usr/bin/env python3
"""ModelOpt 0.39's own export of a mix that aq chose, to compare with `aq-export --format modelopt`.

Reads aq's quantizer state (<scheme>_autoquant_state.safetensors: its metadata names each group's
recipe, its tensor names the modules that were calibrated), quantizes the checkpoint with ModelOpt
(one quant_cfg entry per module, max calibration over --batches, the batches aq-autoquant
--dump-batches wrote), writes ModelOpt's calibrated amax as an aq state file (--state-out, so that
aq-export quantizes with exactly ModelOpt's amax) and runs export_hf_checkpoint into --out.

Recipes: fp8_e4m3, int8_w8a8, w8a16, w4a16 (the weight-only int4 of INT4_BLOCKWISE_WEIGHT_ONLY_CFG;
ModelOpt's export folds an AWQ pre_quant_scale into the layer norms for int4 weights and has none
without AWQ, so --int4-unit-prequant gives those input quantizers a pre_quant_scale of ones, which
changes no number; the ones then appear as extra tensors, which compare_exports.py reports apart).
"""
import argparse
import copy
import json
import sys

import torch


def members(first):
    """The modules of the group named after its first member (ModelOpt's fused groups)."""
    if first.endswith("self_attn.q_proj"):
        stem = first[: -len("q_proj")]
        return [stem + "q_proj", stem + "k_proj", stem + "v_proj"]
    if first.endswith("mlp.gate_proj"):
        stem = first[: -len("gate_proj")]
        return [stem + "gate_proj", stem + "up_proj"]
    return [first]


def recipe_cfg(name, mtq):
    """(weight quantizer, input quantizer) attributes of an aq recipe, from ModelOpt's configs."""
    off = {"enable": False}
    if name == "fp8_e4m3":
        q = mtq.FP8_DEFAULT_CFG["quant_cfg"]
        return q["*weight_quantizer"], q["*input_quantizer"]
    if name == "int8_w8a8":
        q = mtq.INT8_DEFAULT_CFG["quant_cfg"]
        return q["*weight_quantizer"], q["*input_quantizer"]
    if name == "w8a16":
        return mtq.INT8_DEFAULT_CFG["quant_cfg"]["*weight_quantizer"], off
    if name == "w4a16":
        return mtq.INT4_BLOCKWISE_WEIGHT_ONLY_CFG["quant_cfg"]["*weight_quantizer"], off
    raise SystemExit(f"recipe {name!r}: not one this script exports (fp8_e4m3, int8_w8a8, w8a16, w4a16)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--state", required=True, help="aq's <scheme>_autoquant_state.safetensors")
    ap.add_argument("--batches", required=True, help="input_ids, attention_mask int64 [N, T] (aq --dump-batches)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--state-out", required=True)
    ap.add_argument("--int4-unit-prequant", action="store_true")
    args = ap.parse_args()

    import transformers
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(args.state, "pt") as f:
        meta = f.metadata() or {}
    prefix = "model." if any(k.startswith("model.") for k in meta) else ""
    quant_cfg = {"*": {"enable": False}}
    plan = {}
    for group, recipe in sorted(meta.items()):
        if not group.endswith(".quant_recipe") or recipe == "none":
            continue
        first = group[: -len(".quant_recipe")]
        w, i = recipe_cfg(recipe, mtq)
        for m in members(first):
            full = m if prefix else "model." + m
            quant_cfg[full + ".weight_quantizer"] = copy.deepcopy(w)
            quant_cfg[full + ".input_quantizer"] = copy.deepcopy(i)
            plan[full] = recipe
    print(f"{len(plan)} quantized modules: " + json.dumps({r: sum(v == r for v in plan.values()) for r in set(plan.values())}))

    dev = torch.device("cuda")
    model = transformers.AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.bfloat16,
                                                                     attn_implementation="sdpa").to(dev)
    model.eval()
    data = load_file(args.batches)
    n = data["input_ids"].shape[0]

    def forward_loop(m):
        with torch.no_grad():
            for s in range(0, n, args.batch_size):
                m(input_ids=data["input_ids"][s:s + args.batch_size].to(dev),
                  attention_mask=data["attention_mask"][s:s + args.batch_size].to(dev))

    mtq.quantize(model, {"quant_cfg": quant_cfg, "algorithm": "max"}, forward_loop)

    state = {}
    for name, module in model.named_modules():
        if name not in plan:
            continue
        for q in ("weight_quantizer", "input_quantizer"):
            qz = getattr(module, q, None)
            if qz is not None and qz.is_enabled and getattr(qz, "_amax", None) is not None:
                state[f"{name}.{q}._amax"] = qz._amax.detach().float().cpu().contiguous()
    save_file(state, args.state_out, metadata=meta)

    if args.int4_unit_prequant:
        for name, module in model.named_modules():
            if plan.get(name) == "w4a16":
                module.input_quantizer._pre_quant_scale = torch.ones(module.in_features, dtype=torch.bfloat16,
                                                                     device=dev)
    try:
        export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=args.out)
    except Exception as e:  # report, do not hide: ModelOpt's own limits are part of the comparison
        print(f"export_hf_checkpoint failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    print(f"exported to {args.out}; amax of {len(state)} quantizers in {args.state_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
