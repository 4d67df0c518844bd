#!/usr/bin/env python3
"""Compares two exported checkpoints tensor by tensor (names, dtypes, shapes, bytes) and their
quantization configs (hf_quant_config.json, config.json's quantization_config): aq-export's against
ModelOpt's export_hf_checkpoint of the same mix and amax (export_modelopt_reference.py).

  compare_exports.py AQ_DIR MODELOPT_DIR [--json OUT.json]

Prints one line per differing tensor (with the count of differing elements) and a summary; exits 1
on any difference other than tensors only ModelOpt writes that are all ones (pre_quant_scale of a
recipe without AWQ, see export_modelopt_reference.py --int4-unit-prequant).
"""
import argparse
import glob
import json
import os
import sys

import torch
from safetensors import safe_open


def tensors(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with safe_open(path, "pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def raw(t):
    return t.contiguous().view(torch.uint8) if t.dim() > 0 else t.reshape(1).contiguous().view(torch.uint8)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("aq")
    ap.add_argument("modelopt")
    ap.add_argument("--json")
    a = ap.parse_args()
    A, M = tensors(a.aq), tensors(a.modelopt)
    report = {"tensors_aq": len(A), "tensors_modelopt": len(M), "equal": 0, "differ": [], "only_aq": [],
              "only_modelopt": [], "only_modelopt_ones": []}
    for k in sorted(set(A) | set(M)):
        if k not in M:
            report["only_aq"].append(k)
        elif k not in A:
            t = M[k]
            (report["only_modelopt_ones"] if torch.all(t.float() == 1).item() else report["only_modelopt"]).append(k)
        else:
            x, y = A[k], M[k]
            if x.dtype != y.dtype or tuple(x.shape) != tuple(y.shape):
                report["differ"].append({"name": k, "aq": f"{x.dtype} {list(x.shape)}", "modelopt": f"{y.dtype} {list(y.shape)}"})
            elif torch.equal(raw(x), raw(y)):
                report["equal"] += 1
            else:
                n = int((raw(x) != raw(y)).sum().item())
                report["differ"].append({"name": k, "dtype": str(x.dtype), "bytes_differing": n, "bytes": raw(x).numel()})
    hq_a, hq_m = load_json(os.path.join(a.aq, "hf_quant_config.json")), load_json(os.path.join(a.modelopt, "hf_quant_config.json"))
    cfg_a, cfg_m = load_json(os.path.join(a.aq, "config.json")), load_json(os.path.join(a.modelopt, "config.json"))
    report["hf_quant_config_equal"] = hq_a == hq_m
    qa = (cfg_a or {}).get("quantization_config")
    qm = (cfg_m or {}).get("quantization_config")
    report["quantization_config_equal"] = qa == qm
    report["quantization_config_aq"], report["quantization_config_modelopt"] = qa, qm
    if hq_a != hq_m:
        report["hf_quant_config_aq"], report["hf_quant_config_modelopt"] = hq_a, hq_m
    for d in report["differ"]:
        print("DIFF", json.dumps(d))
    for k in report["only_aq"]:
        print("ONLY aq", k)
    for k in report["only_modelopt"]:
        print("ONLY modelopt", k)
    print(f"{report['equal']} tensors equal of {len(A)} (aq) / {len(M)} (ModelOpt); {len(report['differ'])} differ; "
          f"{len(report['only_aq'])} only in aq; {len(report['only_modelopt'])} only in ModelOpt "
          f"(+{len(report['only_modelopt_ones'])} all-ones); hf_quant_config equal: {report['hf_quant_config_equal']}; "
          f"config quantization_config equal: {report['quantization_config_equal']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    ok = not report["differ"] and not report["only_aq"] and not report["only_modelopt"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
