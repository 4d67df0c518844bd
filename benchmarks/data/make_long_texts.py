#!/usr/bin/env python3
"""Writes calibration texts that fill their sequence: each line joins bundled COCO captions (CC BY
4.0, data/README.md) in a seeded order until it is long enough that the Qwen3 tokenizer gives at
least --tokens tokens (so `--seq-len TOKENS` truncates it and no row holds padding).

  make_long_texts.py --texts 128 --tokens 512 --out FILE [--captions FILE] [--seed 0]

The order is a Fisher-Yates shuffle driven by splitmix64 (not Python's `random`, whose streams may
change between versions), so the same arguments give the same bytes anywhere. A caption appears
once per shuffled pass; when the texts need more captions than the file holds, the next pass is a
new shuffle. A line ends once it holds --chars-per-token x --tokens characters: the captions run
about 4.5 characters a token, so the default 6 leaves a margin of a third (tests/long_texts checks
every line's token count; the benchmark checks that no dumped row has padding).
"""
import argparse
import os
import sys

MASK = (1 << 64) - 1


def splitmix64(state):
    """Returns (next state, 64-bit output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def shuffled_passes(captions, seed):
    """Yields the captions forever, one fresh shuffle per pass."""
    state = seed & MASK
    while True:
        order = list(range(len(captions)))
        for i in range(len(order) - 1, 0, -1):
            state, r = splitmix64(state)
            j = r % (i + 1)
            order[i], order[j] = order[j], order[i]
        for i in order:
            yield captions[i]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_captions = os.path.join(here, "..", "..", "data", "captions", "coco2017_captions.txt")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, required=True, help="number of lines to write")
    ap.add_argument("--tokens", type=int, required=True, help="the sequence length each line must fill")
    ap.add_argument("--out", required=True)
    ap.add_argument("--captions", default=default_captions)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chars-per-token", type=float, default=6.0)
    a = ap.parse_args()
    if a.texts < 1 or a.tokens < 1 or a.chars_per_token <= 0:
        sys.exit("make_long_texts.py: --texts, --tokens and --chars-per-token must be positive")
    with open(a.captions, encoding="utf-8") as f:
        captions = [line.strip() for line in f if line.strip()]
    if not captions:
        sys.exit(f"make_long_texts.py: {a.captions}: no captions")
    source = shuffled_passes(captions, a.seed)
    want = int(a.chars_per_token * a.tokens)
    lines = []
    for _ in range(a.texts):
        parts, length = [], 0
        while length < want:
            caption = next(source)
            parts.append(caption if caption[-1] in ".!?" else caption + ".")
            length += len(parts[-1]) + 1
        lines.append(" ".join(parts))
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
