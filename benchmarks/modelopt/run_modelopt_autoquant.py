#!/usr/bin/env python3
"""Runs NVIDIA ModelOpt's own auto_quantize (gradient method) on a Qwen3-VL checkpoint and writes the
comparison JSON defined in README.md (schema "aq.autoquant.compare/v1"), so that aq's run on the same
checkpoint, batches, formats and budget can be set beside it with compare.py.

Data, either
  --batches F.safetensors   input_ids, attention_mask, labels: int64 [N, T] (the exact batches aq uses);
                            split in order into batches of --batch-size rows (last one may be short), or
  --captions FILE           one caption per line, built the way the reference driver did: tokenizer with
                            padding_side="left", padding="max_length", truncation, max_length=--seq-len,
                            labels = input_ids; --max-samples first non-empty lines. --dump-batches F writes
                            them as the safetensors file above, for aq, or
  --image-batches F         aq's --dump-batches of image-caption data: per batch i, "<i>.input_ids",
                            "<i>.attention_mask", "<i>.labels", "<i>.pixel_values", "<i>.image_grid_thw"
                            (batches of their own lengths, used as they are; --batch-size does not apply).
The loss is the reference driver's: CrossEntropyLoss(ignore_index=pad id) on logits[:, :-1] vs
labels[:, 1:], mean over targets != pad (labels equal to -100 are treated as pad).

Formats (aq names -> ModelOpt configs, as the reference driver built them):
  fp8_e4m3  FP8_DEFAULT_CFG                   int8_w8a8  INT8_DEFAULT_CFG
  w4a8      INT4_BLOCKWISE_WEIGHT_ONLY_CFG with input = INT8 per-tensor (CUSTOM_i, 4.0 effective bits)
  w8a4      INT8_DEFAULT_CFG with input = {num_bits 4, axis None} (CUSTOM_i, 4.0 effective bits)
  w4a16     INT4_BLOCKWISE_WEIGHT_ONLY_CFG    w8a16  INT8 axis-0 weights, input disabled (CUSTOM_i)
  the ModelOpt built-ins by their aq recipe names: nvfp4 (NVFP4_DEFAULT_CFG), w4a8_nvfp4_fp8, mxfp8, mxfp6,
  mxfp4, w4a8_mxfp4_fp8, mxint8, fp8_pc_pt (FP8_PER_CHANNEL_PER_TOKEN_CFG), fp8_2d_blockwise

Budget: with --disabled-layers, --bits-mode lm (default) turns the requested bits b into the whole-model
constraint the reference driver used, B' = min(16, (16 D + b (T - D)) / T + 1e-3) (T, D: weight numel of all
Linear/Conv and of the disabled ones); --bits-mode model passes b unchanged.

Device and dtype: --device (default cuda when available) and --dtype (default bfloat16, as the reference
runs; float32 on the CPU gives ModelOpt's scores without bf16 rounding, to compare with aq's fp32 CPU engine).

Timing: model load (from_pretrained + .to(device)) and auto_quantize wall time, with calibration, scoring and
search phases timed by wrapping ModelOpt's searcher methods (CUDA synchronised). Memory: peak allocated /
reserved over the auto_quantize call (ModelOpt resets the peak counters before scoring; the peaks of both
halves are kept).

Re-executes itself with PYTHONHASHSEED=0 unless set: ModelOpt orders equal-compression recipes (fp8 and
int8) by the hash of their names, which moves its monotone score clamp.
"""
import argparse
import copy
import fnmatch
import hashlib
import inspect
import json
import math
import os
import platform
import sys
import time

if "PYTHONHASHSEED" not in os.environ and __name__ == "__main__":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402

SCHEMA = "aq.autoquant.compare/v1"


# ----------------------------------------------------------------------------------------------- formats
def modelopt_format(name, mtq):
    """aq format name -> ModelOpt quantization config (fresh copy)."""
    if name == "fp8_e4m3":
        return mtq.FP8_DEFAULT_CFG
    if name == "int8_w8a8":
        return mtq.INT8_DEFAULT_CFG
    builtin = {"nvfp4": "NVFP4_DEFAULT_CFG", "w4a8_nvfp4_fp8": "W4A8_NVFP4_FP8_CFG", "mxfp8": "MXFP8_DEFAULT_CFG",
               "mxfp6": "MXFP6_DEFAULT_CFG", "mxfp4": "MXFP4_DEFAULT_CFG", "w4a8_mxfp4_fp8": "W4A8_MXFP4_FP8_CFG",
               "mxint8": "MXINT8_DEFAULT_CFG", "fp8_pc_pt": "FP8_PER_CHANNEL_PER_TOKEN_CFG",
               "fp8_2d_blockwise": "FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG"}
    if name in builtin:
        return getattr(mtq, builtin[name])
    if name == "w4a16":
        return mtq.INT4_BLOCKWISE_WEIGHT_ONLY_CFG
    if name == "w4a8":
        cfg = copy.deepcopy(mtq.INT4_BLOCKWISE_WEIGHT_ONLY_CFG)
        act = copy.deepcopy(mtq.INT8_DEFAULT_CFG["quant_cfg"]["*input_quantizer"])
        act["enable"] = True
        cfg["quant_cfg"]["*input_quantizer"] = act
        return cfg
    if name == "w8a4":
        cfg = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
        cfg["quant_cfg"]["*input_quantizer"] = {"num_bits": 4, "axis": None, "enable": True}
        return cfg
    if name == "w8a16":
        cfg = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
        cfg["quant_cfg"]["*input_quantizer"] = {"enable": False}
        return cfg
    raise SystemExit(f"--formats: unknown format {name!r} (fp8_e4m3, int8_w8a8, w4a8, w8a4, w4a16, w8a16, "
                     f"{', '.join(builtin)})")


# ----------------------------------------------------------------------------------------------- data
def batches_from_captions(path, tokenizer, seq_len, max_samples):
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.strip()
            if text:
                lines.append(text)
                if max_samples and len(lines) >= max_samples:
                    break
    if not lines:
        raise SystemExit(f"{path}: no non-empty captions")
    tokenizer.padding_side = "left"
    ids, masks = [], []
    for text in lines:  # one call per caption, as the reference dataset did
        t = tokenizer(text, return_tensors="pt", padding="max_length", truncation=True, max_length=seq_len)
        ids.append(t["input_ids"][0])
        masks.append(t["attention_mask"][0])
    input_ids = torch.stack(ids).to(torch.int64)
    return {"input_ids": input_ids, "attention_mask": torch.stack(masks).to(torch.int64),
            "labels": input_ids.clone()}


def load_batch_file(path):
    from safetensors.torch import load_file
    t = load_file(path)
    for k in ("input_ids", "attention_mask", "labels"):
        if k not in t:
            raise SystemExit(f"{path}: tensor {k!r} missing")
        if t[k].dtype != torch.int64 or t[k].ndim != 2 or t[k].shape != t["input_ids"].shape:
            raise SystemExit(f"{path}: tensor {k!r} must be int64 {list(t['input_ids'].shape)}, got "
                             f"{t[k].dtype} {list(t[k].shape)}")
    return {k: t[k].contiguous() for k in ("input_ids", "attention_mask", "labels")}


def load_image_batch_file(path):
    """aq's --dump-batches of image-caption data: per batch i, "<i>.input_ids|attention_mask|labels"
    int64 [b, T], "<i>.pixel_values" F32 [patches, C*Tp*P*P] and "<i>.image_grid_thw" int64 [n, 3]."""
    from safetensors.torch import load_file
    t = load_file(path)
    keys = ("input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw")
    count = len({k.split(".", 1)[0] for k in t})
    batches = []
    for i in range(count):
        missing = [k for k in keys if f"{i}.{k}" not in t]
        if missing:
            raise SystemExit(f"{path}: batch {i} lacks {', '.join(missing)}")
        batches.append({k: t[f"{i}.{k}"].contiguous() for k in keys})
    return batches


def data_digest(data):
    h = hashlib.sha256()
    for k in ("input_ids", "attention_mask", "labels"):
        h.update(k.encode())
        h.update(data[k].contiguous().numpy().astype("<i8").tobytes())
    return h.hexdigest()


def split_batches(data, batch_size):
    n = data["input_ids"].shape[0]
    return [{k: v[i:i + batch_size] for k, v in data.items()} for i in range(0, n, batch_size)]


# ----------------------------------------------------------------------------------------------- utilities
def sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def finite(x):
    """JSON-safe float: non-finite values become the strings 'NaN', 'Infinity', '-Infinity'."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


class PhaseTimer:
    """Wraps searcher methods to time them and to keep the peak memory that ModelOpt's own
    reset_peak_memory_stats() (before scoring) would otherwise drop."""

    def __init__(self):
        self.seconds = {}
        self.peaks = []  # (allocated, reserved) seen before each wrapped call and at the end

    def note_peak(self):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.peaks.append((torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()))

    def wrap(self, owner, attr, key):
        orig = getattr(owner, attr, None)
        if orig is None or getattr(orig, "_aq_wrapped", False):
            return False
        timer = self

        def wrapped(*a, **kw):
            sync()
            timer.note_peak()
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                sync()
                timer.seconds[key] = timer.seconds.get(key, 0.0) + time.perf_counter() - t0
                timer.note_peak()

        wrapped._aq_wrapped = True
        setattr(owner, attr, wrapped)
        return True


def weight_numel(model, patterns):
    total = disabled = 0
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            n = m.weight.numel()
            total += n
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                disabled += n
    return total, disabled


def extension_status():
    """Loads (JIT-builds if needed) ModelOpt's CUDA extensions; reports which loaded and how long it took."""
    from modelopt.torch.quantization import extensions as ext
    out = {}
    for fn in ("get_cuda_ext", "get_cuda_ext_fp8"):
        t0 = time.perf_counter()
        try:
            mod = getattr(ext, fn)()
            ok = mod is not None
        except Exception as e:  # noqa: BLE001 - reported, ModelOpt falls back to its Python path
            ok = False
            print(f"{fn}: {e}", file=sys.stderr)
        out[fn.replace("get_", "")] = {"loaded": ok, "load_s": round(time.perf_counter() - t0, 3)}
    return out


def patch_fp8_eager_scale():
    """ModelOpt's Python FP8 fake quant (used on the CPU) writes `448.0 / amax`, which torch evaluates as
    `amax.reciprocal() * 448` (Tensor.__rtruediv__), one rounding more than the CUDA kernel's
    `448.f / amax` (ATen's Scalar / Tensor is a true division). The scales can differ by one ulp, and bf16
    weights put many x * scale exactly on an E4M3 rounding tie, so the two paths round differently.
    This replaces the scale computation only; the rest of the Python path is ModelOpt's."""
    from modelopt.torch.quantization import tensor_quant as tq

    def fp8_eager_division(x, amax=None):
        dtype = x.dtype
        if amax is not None:
            a = amax.to(torch.float32)
            scale = torch.full_like(a, 448.0) / a
            x = x.to(torch.float32) * scale
        x = x.to(torch.float8_e4m3fn)
        if amax is not None:
            x = x.to(torch.float32) * (torch.ones_like(scale) / scale)
        return x.to(dtype)

    tq._fp8_eager = fp8_eager_division


# ----------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face Qwen3-VL checkpoint folder")
    ap.add_argument("--batches", help="safetensors with input_ids, attention_mask, labels int64 [N, T]")
    ap.add_argument("--image-batches", help="aq's --dump-batches of image-caption data (one batch each, any length)")
    ap.add_argument("--captions", help="captions file (one per line) to build batches the reference way")
    ap.add_argument("--tokenizer", help="tokenizer folder for --captions (default: --model)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-samples", type=int, default=0, help="first N captions (0: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dump-batches", help="write the batches as safetensors (for aq)")
    ap.add_argument("--pad-token-id", type=int, default=None, help="default: tokenizer's, else 151643")
    ap.add_argument("--formats", default="fp8_e4m3,int8_w8a8")
    ap.add_argument("--effective-bits", type=float, default=8.0)
    ap.add_argument("--bits-mode", choices=["lm", "model"], default="lm")
    ap.add_argument("--num-calib-steps", type=int, default=0, help="0: all batches")
    ap.add_argument("--num-score-steps", type=int, default=0, help="0: min(max(128 // bs, 1), #batches)")
    ap.add_argument("--disabled-layers", default="model.visual*", help="comma-separated fnmatch patterns")
    ap.add_argument("--method", default="gradient")
    ap.add_argument("--attn-implementation", default="sdpa")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="model dtype (bfloat16 as the reference runs; float32 to separate bf16 noise from aq)")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                    help="auto: cuda when available (ModelOpt on the CPU uses its Python fake-quant path)")
    ap.add_argument("--fp8-scale", choices=["modelopt", "division"], default="modelopt",
                    help="division: make ModelOpt's Python (CPU) FP8 path compute scale = 448 / amax by true "
                         "division, as its CUDA kernel does, instead of reciprocal(amax) * 448 (see below)")
    ap.add_argument("--label", default="", help="free text stored in run.label")
    ap.add_argument("--verbose", action="store_true", help="ModelOpt's verbose search output")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if sum(bool(x) for x in (args.batches, args.captions, args.image_batches)) != 1:
        raise SystemExit("give exactly one of --batches, --captions, --image-batches")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    if args.device == "auto" and not torch.cuda.is_available():
        print("warning: no CUDA device, running on the CPU", file=sys.stderr)
    dev = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)

    import transformers
    import modelopt
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization import algorithms as mo_alg
    from modelopt.torch.quantization import model_quant as mo_mq

    ext = extension_status() if dev.type == "cuda" else {}
    if args.fp8_scale == "division":
        patch_fp8_eager_scale()

    # ---- data
    pad_id = args.pad_token_id
    if args.captions:
        tok = transformers.AutoTokenizer.from_pretrained(args.tokenizer or args.model)
        data = batches_from_captions(args.captions, tok, args.seq_len, args.max_samples)
        if pad_id is None:
            pad_id = tok.pad_token_id
        source = {"kind": "captions", "path": os.path.basename(args.captions), "seq_len": args.seq_len,
                  "max_samples": args.max_samples, "padding_side": "left"}
    elif args.batches:
        data = load_batch_file(args.batches)
        source = {"kind": "batches", "path": os.path.basename(args.batches)}
    else:
        data = None
        source = {"kind": "image_batches", "path": os.path.basename(args.image_batches)}
    if pad_id is None:
        pad_id = 151643
    if args.dump_batches and data is not None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in data.items()}, args.dump_batches)
    batches = split_batches(data, args.batch_size) if data is not None else load_image_batch_file(args.image_batches)
    n_calib = args.num_calib_steps or len(batches)
    n_score = args.num_score_steps or min(max(128 // max(args.batch_size, 1), 1), max(len(batches), 1))

    # ---- model
    sync()
    t0 = time.perf_counter()
    dkw = {"dtype": dtype} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": dtype}
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        args.model, attn_implementation=args.attn_implementation, **dkw).to(dev)
    model.eval()
    if args.image_batches:
        # What the processor returns beside input_ids (transformers >= 5 needs it for M-RoPE): 1 on
        # image placeholders, 0 on text.
        for x in batches:
            x["mm_token_type_ids"] = (x["input_ids"] == model.config.image_token_id).to(torch.int64)
    sync()
    t_load = time.perf_counter() - t0
    weights_bytes = torch.cuda.memory_allocated() if dev.type == "cuda" else 0

    patterns = [p for p in args.disabled_layers.split(",") if p]
    total_w, disabled_w = weight_numel(model, patterns)
    b = args.effective_bits
    constraint_bits = b
    if args.bits_mode == "lm" and patterns and 0 < disabled_w < total_w:
        constraint_bits = min(16.0, (disabled_w * 16.0 + (total_w - disabled_w) * b) / float(total_w) + 1e-3)

    fmt_names = [f for f in args.formats.split(",") if f]
    cfgs = [modelopt_format(f, mtq) for f in fmt_names]
    # the display string ModelOpt gives each format (auto name or CUSTOM_i), to map results back to aq names
    recipe_str = {}
    for i, (f, cfg) in enumerate(zip(fmt_names, cfgs)):
        recipe_str[str(mo_alg.QuantRecipe(cfg, mo_alg.QuantRecipe.get_auto_name_for_config(cfg) or
                                          f"CUSTOM_{i}"))] = f
    recipe_str[str(mo_alg.QuantRecipe(None))] = "none"

    def to_device(batch):
        return {k: v.to(dev) for k, v in batch.items() if k != "labels"}

    def forward_step(m, batch):
        return m(**to_device(batch))

    loss_fct = torch.nn.CrossEntropyLoss(ignore_index=pad_id)

    def loss_func(output, batch):
        labels = batch["labels"].to(dev)
        labels = torch.where(labels == -100, torch.full_like(labels, pad_id), labels)
        logits = output.logits
        shift_logits = logits[..., :-1, :].contiguous()
        shift_labels = labels[..., 1:].contiguous()
        return loss_fct(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1))

    # ---- timing hooks (method names of 0.39 and 0.40)
    timer = PhaseTimer()
    searcher_cls = getattr(mo_alg, "AutoQuantizeGradientSearcher", None) or mo_alg.AutoQuantizeSearcher
    owners = []
    for owner in (getattr(mo_alg, "_AutoQuantizeBaseSearcher", None), mo_alg.AutoQuantizeSearcher, searcher_cls):
        if owner is not None and owner not in owners:
            owners.append(owner)
    for owner in owners:
        timer.wrap(owner, "before_search", "before_search")
        timer.wrap(owner, "_estimate_auto_quantize_scores", "scoring")
        timer.wrap(owner, "estimate_sensitivity_scores", "scoring")
        timer.wrap(owner, "run_search", "search")
    timer.wrap(mo_mq, "calibrate", "calibration")
    gc_contexts = len(getattr(mo_alg.AutoQuantizeSearcher, "gradient_checkpointing_enable_contexts", []))

    kwargs = dict(constraints={"effective_bits": constraint_bits}, quantization_formats=cfgs,
                  data_loader=batches, forward_step=forward_step, loss_func=loss_func,
                  disabled_layers=patterns or None, num_calib_steps=n_calib, num_score_steps=n_score,
                  verbose=args.verbose)
    if "method" in inspect.signature(mtq.auto_quantize).parameters:
        kwargs["method"] = args.method
    elif args.method != "gradient":
        raise SystemExit(f"ModelOpt {modelopt.__version__} has only the gradient method")

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    model, state = mtq.auto_quantize(model, **kwargs)
    sync()
    t_aq = time.perf_counter() - t0
    timer.note_peak()
    peak_alloc = max((p[0] for p in timer.peaks), default=0)
    peak_res = max((p[1] for p in timer.peaks), default=0)

    # ---- results
    from modelopt.torch.opt.utils import named_hparams
    raw = {}
    for name, hp in named_hparams(model, unique=True):
        if isinstance(hp, mo_alg.QuantRecipeHparam):
            raw[name] = {str(r): float(v) for r, v in hp.importance.items()}

    best = state["best"]
    groups = []
    for name, st in state["candidate_stats"].items():
        fstr = [str(r) for r in st["formats"]]
        chosen = best["recipe"].get(name)
        groups.append({
            "name": name[:-len(".quant_recipe")] if name.endswith(".quant_recipe") else name,
            "formats": [recipe_str.get(s, s) for s in fstr],
            "tool_formats": fstr,
            "scores": [finite(x) for x in st["scores"]],
            "raw_scores": [finite(raw.get(name, {}).get(s, float("nan"))) for s in fstr],
            "costs": [float(x) for x in st["costs"]],
            "chosen": recipe_str.get(str(chosen), str(chosen)) if chosen is not None else None,
        })
    configurable = sum(1 for g in groups if len(g["formats"]) > 1)

    phases = dict(timer.seconds)
    calib_s = phases.get("calibration")
    score_s = phases.get("scoring")
    search_s = phases.get("search")
    result = {
        "schema": SCHEMA,
        "tool": {"name": "modelopt", "version": modelopt.__version__},
        "environment": {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "device": dev.type, "threads": torch.get_num_threads(),
            "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
            "cuda_extensions": ext,
            "hf_gradient_checkpointing_context": gc_contexts > 0,
        },
        "run": {
            "label": args.label, "model": os.path.basename(os.path.normpath(args.model)),
            "method": args.method, "formats": fmt_names,
            "tool_formats": {v: k for k, v in recipe_str.items()},
            "effective_bits_requested": b, "bits_mode": args.bits_mode,
            "effective_bits_constraint": constraint_bits,
            "disabled_layers": patterns, "weight_numel_total": total_w, "weight_numel_disabled": disabled_w,
            "batch_size": args.batch_size, "num_batches": len(batches),
            "num_samples": sum(int(x["input_ids"].shape[0]) for x in batches),
            "seq_len": max(int(x["input_ids"].shape[1]) for x in batches),
            "num_calib_steps": n_calib, "num_score_steps": n_score, "pad_token_id": pad_id,
            "data": source, "data_sha256": data_digest(data) if data is not None else "",
            "attn_implementation": args.attn_implementation, "dtype": args.dtype, "fp8_scale": args.fp8_scale,
        },
        "timing_s": {
            "model_load": t_load, "auto_quantize": t_aq,
            "calibration": calib_s, "scoring": score_s, "search": search_s,
        },
        "memory_bytes": {"weights": weights_bytes, "peak_allocated": peak_alloc, "peak_reserved": peak_res},
        "result": {
            "effective_bits": finite(best["constraints"]["effective_bits"]),
            "total_score": finite(best["score"]), "is_satisfied": bool(best["is_satisfied"]),
            "num_groups": len(groups), "num_configurable_groups": configurable,
            "state_keys": list(state.keys()),
        },
        "groups": groups,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    chosen_hist = {}
    for g in groups:
        chosen_hist[g["chosen"]] = chosen_hist.get(g["chosen"], 0) + 1
    print(f"[{args.label or args.out}] modelopt {modelopt.__version__}: load {t_load:.2f}s auto_quantize "
          f"{t_aq:.2f}s (calib {calib_s or 0:.2f} score {score_s or 0:.2f} search {search_s or 0:.2f}) "
          f"peak {peak_alloc / 2**30:.2f} GiB alloc {peak_res / 2**30:.2f} GiB reserved; eff bits "
          f"{result['result']['effective_bits']} score {result['result']['total_score']} chosen {chosen_hist}")


if __name__ == "__main__":
    main()
