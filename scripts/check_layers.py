#!/usr/bin/env python3
"""Checks that no header in include/aq/ includes a header of a higher layer, and that the drivers'
layer (examples/cli/) sits on top of the library.

Every `#include "aq/..."` / `<aq/...>` of every header under include/aq/ is an edge; a header
belongs to the layer of the first LAYERS row whose folder its path starts with. An edge is allowed
within a layer and downwards; the two backends are peers (neither includes the other), and the
CUDA backend is layered inside. No header under include/ includes a `cli/` header. A header in
examples/cli/ includes only library headers (aq/..., existing under include/), other cli/ headers
and system headers (<...>). Prints one line per violating edge and exits 1 when there is any.

  check_layers.py            check the tree (CTest runs this)
  check_layers.py --list     print every violation and a count per layer pair, exit 0
"""
import argparse
import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "include"
CLI_ROOT = ROOT / "examples"  # the drivers' include root: "cli/options.hpp" is examples/cli/options.hpp

# The layers, low -> high: (rank, layer, folder under include/aq/). A header may include headers of
# its own layer and of any lower rank. Rows of equal rank are peers and may not include each other,
# except sub-layers of one backend ("backend/cuda/kernels" < ".../model" < ".../scoring"), which
# may include their lower siblings.
LAYERS = [
    (0, "core", "core/"),                        # error, bf16, tensor views, thread pool, files, progress
    (1, "formats", "formats/"),                  # number formats (int4, int8, e4m3, none)
    (2, "quant", "quant/"),                      # quantizers, granularity, recipes
    (3, "io", "io/"),                            # checkpoint/, tokenizer/, image/, data/, JSON reading
    (4, "model", "model/"),                      # Qwen3-VL description + backend-neutral host math
    (5, "search", "search/"),                    # search space, knapsack, Pareto: no model numbers
    (6, "score", "score/"),                      # backend-neutral scoring math + the backend interface
    (7, "backend/cpu", "backend/cpu/"),          # CPU forward/backward and scorers
    (7, "backend/cuda/kernels", "backend/cuda/kernels/"),
    (7, "backend/cuda/model", "backend/cuda/model/"),
    (7, "backend/cuda/scoring", "backend/cuda/scoring/"),
    (8, "report", "report/"),                    # report model, manifest, sensitivity, JSON writer
    (9, "export", "export/"),                    # a chosen mix written as a serving checkpoint
    (10, "engine", "engine/"),                   # the one pipeline
    (11, "umbrella", "autoquant.hpp"),           # includes everything
]
# Above the library, outside include/: the drivers' layer, examples/cli/ (options, presets, preflight,
# bundled data, the built-in model, outputs, result JSON).

LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]aq/([^>"]+)[>"]', re.M)
CLI_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](cli/[^>"]+)[>"]', re.M)
ANY_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer_of(header):
    """(index into LAYERS) of a path relative to include/aq/, or None."""
    for index, (_, _, folder) in enumerate(LAYERS):
        if header == folder or header.startswith(folder):
            return index
    return None


def allowed(src, dst):
    src_rank, src_name, _ = LAYERS[src]
    dst_rank, dst_name, _ = LAYERS[dst]
    if src_rank != dst_rank:
        return dst_rank < src_rank
    # Equal rank: the same layer, or a lower sub-layer of the same backend (backend/cuda/*).
    return src == dst or (src_name.rsplit("/", 1)[0] == dst_name.rsplit("/", 1)[0] and dst < src)


def headers():
    base = INCLUDE_DIR / "aq"
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in (".hpp", ".cuh", ".h"):
            yield path.relative_to(base).as_posix()


def library_problems(pairs):
    """Upward edges between the library's layers, and library headers that reach the drivers' layer."""
    problems = []
    for header in headers():
        src = layer_of(header)
        if src is None:
            problems.append(f"{header}: in no layer (add its folder to LAYERS in scripts/check_layers.py)")
            continue
        text = (INCLUDE_DIR / "aq" / header).read_text(encoding="utf-8")
        for included in CLI_INCLUDE.findall(text):
            problems.append(f"aq/{header} -> {included} (the library may not include the drivers' layer)")
            pairs[(LAYERS[src][1], "cli")] += 1
        for included in LOCAL_INCLUDE.findall(text):
            dst = layer_of(included)
            if dst is None:
                problems.append(f"{header} -> {included}: included header is in no layer")
            elif not allowed(src, dst):
                a, b = LAYERS[src][1], LAYERS[dst][1]
                problems.append(f"aq/{header} -> aq/{included} (layer {a} may not include layer {b})")
                pairs[(a, b)] += 1
    return problems


def cli_problems():
    """Includes of examples/cli/ headers other than library, cli/ and system headers."""
    problems = []
    for path in sorted((CLI_ROOT / "cli").glob("*.hpp")):
        header = path.relative_to(CLI_ROOT).as_posix()
        for bracket, included in ANY_INCLUDE.findall(path.read_text(encoding="utf-8")):
            if included.startswith("aq/"):
                if not (INCLUDE_DIR / included).is_file():
                    problems.append(f"{header} -> {included}: no such library header")
            elif included.startswith("cli/"):
                if not (CLI_ROOT / included).is_file():
                    problems.append(f"{header} -> {included}: no such cli header")
            elif bracket == '"':
                problems.append(f"{header} -> {included} (cli may include only aq/..., cli/... and system headers)")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print violations and counts, exit 0")
    args = parser.parse_args()

    pairs = collections.Counter()
    problems = library_problems(pairs) + cli_problems()
    for line in problems:
        print(line)
    if args.list:
        for (a, b), count in sorted(pairs.items()):
            print(f"{count:4d}  {a} -> {b}")
        print(f"{len(problems)} violation(s)")
        return 0
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
