#!/usr/bin/env python3
"""Builds a random-weight Qwen3-VL checkpoint in the Hugging Face layout, for timing and agreement runs of
ModelOpt's auto_quantize against aq where the real weights are not at hand.

The model is transformers' own Qwen3VLForConditionalGeneration built from a config preset; every parameter
is then overwritten from one seeded generator, in named_parameters() order, and stored as bf16
(save_pretrained: model*.safetensors + config.json). Tokenizer files are copied from --tokenizer so the
directory loads like the real checkpoint. A small random_init.json records preset, seed, versions and the
sha256 of the written safetensors (to check that two machines drew the same weights).

Presets:
  tiny  text hidden 128, 4 layers, GQA 4/2 heads of 32, MLP 256, the real vocabulary (151936, tied);
        vision depth 2, hidden 128, one deepstack tap. Every Linear input dim is a multiple of 128, so
        INT4 block-128 weights need no padding. ~20M parameters (19.4M of them the embedding).
  2b    the exact Qwen3-VL-2B-Instruct shapes (28 layers, hidden 2048, tied; vision depth 24, hidden 1024).
  4b    the exact Qwen3-VL-4B-Instruct shapes (36 layers, hidden 2560, vision depth 24, deepstack 5/11/17).
  8b    the exact Qwen3-VL-8B-Instruct shapes (36 layers, hidden 4096, lm_head not tied; vision depth 27,
        hidden 1152, deepstack 8/16/24).

Initialisation (deterministic for a given device, seed and torch version): matrices and conv kernels
~ N(0, 1/fan_in), token embedding ~ N(0, 0.02^2) (tied lm_head logits stay O(1)), norm weights
1 + 0.1 N(0,1), biases and other vectors 0.02 N(0,1). Values are drawn in fp32 and rounded to bf16.

Usage:
  make_random_qwen3_vl.py --preset tiny --tokenizer TOKDIR --out DIR [--seed 0] [--device cpu|cuda]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656


def rope_kwargs(theta, section):
    # transformers >= 5 reads rope_parameters; 4.57 reads rope_theta + rope_scaling.
    if int(transformers.__version__.split(".")[0]) >= 5:
        return dict(rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": section,
                                     "mrope_interleaved": True})
    return dict(rope_theta=theta,
                rope_scaling={"rope_type": "default", "mrope_section": section, "mrope_interleaved": True})


def text_config(hidden, inter, layers, heads, kv, head_dim, section, tie=True):
    return dict(vocab_size=151936, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, hidden_act="silu",
                max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=tie,
                attention_bias=False, attention_dropout=0.0, initializer_range=0.02,
                bos_token_id=151643, eos_token_id=151645, **rope_kwargs(5000000.0, section))


def vision_config(depth, hidden, inter, heads, out_hidden, n_pos, deepstack):
    return dict(depth=depth, hidden_size=hidden, hidden_act="gelu_pytorch_tanh", intermediate_size=inter,
                num_heads=heads, in_channels=3, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                out_hidden_size=out_hidden, num_position_embeddings=n_pos, initializer_range=0.02,
                deepstack_visual_indexes=deepstack)


PRESETS = {
    "tiny": dict(text=text_config(128, 256, 4, 4, 2, 32, [6, 5, 5]),
                 vision=vision_config(2, 128, 256, 2, 128, 256, [0])),
    "2b": dict(text=text_config(2048, 6144, 28, 16, 8, 128, [24, 20, 20]),
               vision=vision_config(24, 1024, 4096, 16, 2048, 2304, [5, 11, 17])),
    "4b": dict(text=text_config(2560, 9728, 36, 32, 8, 128, [24, 20, 20]),
               vision=vision_config(24, 1024, 4096, 16, 2560, 2304, [5, 11, 17])),
    "8b": dict(text=text_config(4096, 12288, 36, 32, 8, 128, [24, 20, 20], tie=False),
               vision=vision_config(27, 1152, 4304, 16, 4096, 2304, [8, 16, 24])),
}


def make_config(preset):
    spec = PRESETS[preset]
    return Qwen3VLConfig(text_config=dict(spec["text"]), vision_config=dict(spec["vision"]),
                         tie_word_embeddings=spec["text"]["tie_word_embeddings"], image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD,
                         vision_start_token_id=VISION_START, vision_end_token_id=VISION_END)


def build_model(config, device):
    kw = {"dtype": torch.bfloat16} if int(transformers.__version__.split(".")[0]) >= 5 \
        else {"torch_dtype": torch.bfloat16}
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, **kw)
    model.tie_weights()
    return model


@torch.no_grad()
def randomize(model, seed, device):
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    for name, p in model.named_parameters():  # a tied lm_head is the embedding: visited once
        v = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
        if name.endswith("embed_tokens.weight"):
            v.mul_(0.02)
        elif p.ndim >= 2:
            v.mul_(p[0].numel() ** -0.5)
        elif "norm" in name and name.endswith("weight"):
            v.mul_(0.1).add_(1.0)
        else:
            v.mul_(0.02)
        p.copy_(v.to(p.dtype))
        del v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json, tokenizer_config.json, ...")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where weights are drawn (cuda is fast for 4b)")
    args = ap.parse_args()

    t0 = time.time()
    config = make_config(args.preset)
    model = build_model(config, args.device)
    embed = model.model.language_model.embed_tokens.weight
    if config.tie_word_embeddings and model.lm_head.weight.data_ptr() != embed.data_ptr():
        sys.exit("lm_head is not tied to embed_tokens after construction")
    randomize(model, args.seed, args.device)
    t_build = time.time() - t0

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    t_save = time.time() - t0 - t_build
    copied = []
    for f in sorted(os.listdir(args.tokenizer)):
        src = os.path.join(args.tokenizer, f)
        if os.path.isfile(src) and f != "config.json":
            shutil.copyfile(src, os.path.join(args.out, f))
            copied.append(f)
    n_params = sum(p.numel() for p in model.parameters())
    digests = {}
    for f in sorted(os.listdir(args.out)):
        if f.endswith(".safetensors"):
            h = hashlib.sha256()
            with open(os.path.join(args.out, f), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
            digests[f] = h.hexdigest()
    info = {"preset": args.preset, "seed": args.seed, "device": args.device,
            "device_name": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "cpu",
            "num_parameters": n_params, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizer_files": copied, "safetensors_sha256": digests, "build_s": round(t_build, 3), "save_s": round(t_save, 3)}
    with open(os.path.join(args.out, "random_init.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(info, sort_keys=True))


if __name__ == "__main__":
    main()
