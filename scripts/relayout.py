#!/usr/bin/env python3
"""One-off: moves include/aq/ into the layered layout that scripts/check_layers.py checks.

Run once from a clean checkout, after the branches that touch the moved headers are merged:

  python3 scripts/relayout.py            # git mv + include rewrites; then build, test, commit
  python3 scripts/relayout.py --dry-run  # print the moves only

Every header under include/aq/ must have a row in MOVES (old path -> new path, relative to
include/aq/; a header that stays has a row mapping it to itself). A header without one stops the
script before anything changes, with its name, so it can be given a place. Rows for headers that
do not exist (yet) are skipped. After the moves, every `aq/<old>` path in the files of REWRITE_GLOBS
becomes `aq/<new>` (bare `<old>` paths in text too), headers include Eigen and simdjson through
their wrappers (and .cu/.cuh files drop their own Eigen and simdjson settings), tests/CMakeLists.txt globs CUDA headers wherever they are and registers
check_layers.py, and nothing else is regenerated (single_include/ is regenerated separately by
scripts/amalgamate.py). The script is deleted after it has run.
"""
import argparse
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
AQ = ROOT / "include" / "aq"

# old path -> new path (relative to include/aq/). Grouped by the new layer, low -> high.
MOVES = {
    # core, formats, quant: unchanged
    **{f"core/{n}.hpp": f"core/{n}.hpp" for n in
       ("atomic_file", "bf16", "config", "dtype", "error", "output_set", "tensor", "thread_pool")},
    **{f"formats/{n}.hpp": f"formats/{n}.hpp" for n in
       ("all_formats", "e4m3", "format", "int4", "int8", "minifloat", "none", "rounding", "signed_int")},
    **{f"quant/{n}.hpp": f"quant/{n}.hpp" for n in
       ("fake_quantize", "granularity", "quantizer", "recipe", "recipe_registry", "recipes")},

    # io: files and JSON at the root, then checkpoint/, tokenizer/, image/, data/
    "io/mapped_file.hpp": "io/mapped_file.hpp",
    "io/regular_file.hpp": "io/regular_file.hpp",
    "io/json_parser.hpp": "io/json_parser.hpp",
    "io/json_type_name.hpp": "io/json_type_name.hpp",
    "io/safetensors.hpp": "io/checkpoint/safetensors.hpp",
    "io/safetensors_writer.hpp": "io/checkpoint/safetensors_writer.hpp",
    "io/hf_config.hpp": "io/checkpoint/hf_config.hpp",
    "io/tokenizer.hpp": "io/tokenizer/tokenizer.hpp",
    "io/bpe.hpp": "io/tokenizer/bpe.hpp",
    "io/nfc.hpp": "io/tokenizer/nfc.hpp",
    "io/pretokenizer.hpp": "io/tokenizer/pretokenizer.hpp",
    "io/unicode_properties.hpp": "io/tokenizer/unicode_properties.hpp",
    "io/unicode_tables.hpp": "io/tokenizer/unicode_tables.hpp",
    "io/utf8.hpp": "io/tokenizer/utf8.hpp",
    "io/image.hpp": "io/image/image.hpp",
    "io/image_preprocess.hpp": "io/image/image_preprocess.hpp",
    "io/jpeg.hpp": "io/image/jpeg.hpp",
    "io/calib_batches.hpp": "io/data/calib_batches.hpp",
    "io/calib_dataset.hpp": "io/data/calib_dataset.hpp",
    "io/chat_template.hpp": "io/data/chat_template.hpp",

    # model: the Qwen3-VL description and the host math both backends share
    "model/quantizable_modules.hpp": "model/quantizable_modules.hpp",
    "model/causal_lm_targets.hpp": "model/causal_lm_targets.hpp",
    "model/rope_frequencies.hpp": "model/rope_frequencies.hpp",
    "model/attention_config.hpp": "model/attention_config.hpp",
    **{f"model/qwen3_vl/{n}.hpp": f"model/qwen3_vl/{n}.hpp" for n in
       ("batch", "checkpoint_source", "config", "config_json", "modules", "parameters", "rope_index", "schema",
        "special_tokens", "text_batch", "text_batch_pack", "text_batch_padding", "text_batch_split",
        "text_weights", "vision_geometry", "vision_weights")},

    # search: what can be chosen and how, no model numbers
    **{f"search/{n}.hpp": f"search/{n}.hpp" for n in ("allocation_problem", "knapsack", "lagrangian", "pareto")},
    "autoquant/search_space.hpp": "search/search_space.hpp",
    "autoquant/scope.hpp": "search/scope.hpp",
    "autoquant/cost_model.hpp": "search/cost_model.hpp",

    # score: backend-neutral scoring math and the interface a backend implements
    "score/monotone_clamp.hpp": "score/monotone_clamp.hpp",
    "autoquant/scoring_backend.hpp": "score/scoring_backend.hpp",

    # backend/cpu: kernels at the root, the Qwen3-VL forward/backward, the CPU scorers
    **{f"backend/cpu/{n}.hpp": f"backend/cpu/{n}.hpp" for n in
       ("attention", "cross_entropy", "eigen", "gelu", "gemm", "layer_norm", "rms_norm", "rope", "swiglu")},
    "model/qwen3_vl/linear_observer.hpp": "backend/cpu/qwen3_vl/linear_observer.hpp",
    "model/qwen3_vl/text_model.hpp": "backend/cpu/qwen3_vl/text_model.hpp",
    "model/qwen3_vl/vision_model.hpp": "backend/cpu/qwen3_vl/vision_model.hpp",
    "model/qwen3_vl/vl_model.hpp": "backend/cpu/qwen3_vl/vl_model.hpp",
    "autoquant/model_runner.hpp": "backend/cpu/qwen3_vl/model_runner.hpp",
    "score/quantized_linear.hpp": "backend/cpu/score/quantized_linear.hpp",  # fake-quantized GEMMs (cpu gemm)
    "score/calibrated_recipes.hpp": "backend/cpu/score/calibrated_recipes.hpp",  # holds quantized_linear weights
    "score/gradient_scorer.hpp": "backend/cpu/score/gradient_scorer.hpp",
    "score/kl_div_scorer.hpp": "backend/cpu/score/kl_div_scorer.hpp",
    "autoquant/cpu_backend.hpp": "backend/cpu/score/cpu_backend.hpp",

    # backend/cuda: kernels < model < scoring
    **{f"backend/cuda/{n}": f"backend/cuda/kernels/{n}" for n in
       ("amax.cuh", "attention.cuh", "block_reduce.cuh", "check.hpp", "cross_entropy.cuh", "device_buffer.cuh",
        "device_matrix.cuh", "elementwise.cuh", "embedding.cuh", "fake_quant.cuh", "gelu.cuh", "gemm_cublaslt.cuh",
        "gradient_score.cuh", "kernel_profile.cuh", "kl_div.cuh", "layer_norm.cuh", "pinned_upload.hpp",
        "qk_norm_rope.cuh", "rms_norm.cuh", "rope.cuh", "swiglu.cuh")},
    **{f"backend/cuda/{n}": f"backend/cuda/model/{n}" for n in
       ("linear_observer.cuh", "qwen3_vl_text.cuh", "qwen3_vl_text_checkpoint.hpp", "qwen3_vl_text_weights.cuh",
        "qwen3_vl_vision.cuh", "qwen3_vl_vision_checkpoint.hpp", "qwen3_vl_vision_weights.cuh")},
    **{f"backend/cuda/{n}": f"backend/cuda/scoring/{n}" for n in
       ("gradient_scorer.cuh", "kl_div_scorer.cuh", "cuda_scoring_backend.cuh")},

    # report: the report model and every file written from it
    "io/report_model.hpp": "report/report_model.hpp",
    "io/quant_manifest.hpp": "report/quant_manifest.hpp",
    "io/sensitivity_report.hpp": "report/sensitivity_report.hpp",
    "io/json_writer.hpp": "report/json_writer.hpp",
    "io/python_float.hpp": "report/python_float.hpp",  # users: json_writer, sensitivity_report, result_json

    # engine: the one pipeline
    "autoquant/engine.hpp": "engine/engine.hpp",
    "autoquant/progress.hpp": "core/progress.hpp",
    "backend/cuda/autoquant_cuda.cuh": "engine/autoquant_cuda.cuh",  # the GPU run of the pipeline

    # cli: what the drivers need around the engine
    **{f"autoquant/{n}.hpp": f"cli/{n}.hpp" for n in
       ("options", "presets", "result_json", "preflight", "bundled_data", "outputs", "calib_inputs", "default_model",
        "memory_plan")},

    "autoquant.hpp": "autoquant.hpp",
}

# Text files whose `aq/...` paths follow the moves (scripts/amalgamate.py walks includes from the
# umbrella and names no other header, so it needs no rewrite; it is listed to keep that checked).
REWRITE_GLOBS = [
    "include/**/*.hpp", "include/**/*.cuh", "tests/**/*.cpp", "tests/**/*.cu", "tests/**/*.cuh",
    "tests/**/*.hpp", "tests/**/*.cmake", "tests/**/CMakeLists.txt", "examples/**/*.cpp", "examples/**/*.cu",
    "examples/**/*.hpp", "examples/**/*.cuh", "examples/**/CMakeLists.txt", "benchmarks/**/*.cpp",
    "benchmarks/**/*.cu", "benchmarks/**/*.cuh", "benchmarks/**/*.hpp", "benchmarks/**/*.md", "fuzz/**/*.cpp",
    "fuzz/**/*.md", "docs/*.md", "README.md", "CMakeLists.txt", "scripts/amalgamate.py", "scripts/*.sh",
]

# Third-party headers enter include/aq/ through one wrapper each (what nvcc needs is set there): a
# header merged with a direct include of one gets the wrapper instead (new paths).
WRAPPED_INCLUDES = {
    "#include <Eigen/Core>": '#include "aq/backend/cpu/eigen.hpp"',
    "#include <simdjson.h>": '#include "aq/io/json_parser.hpp"',
}

# With Eigen entering only through backend/cpu/eigen.hpp, which silences nvcc's warning 20012 about
# it, the suppressions around include sites go (with the comment that explained one of them).
EIGEN_PRAGMA_LINES = re.compile(
    r"^(#pragma nv_diag_(suppress|default) 20012\b.*|// The CPU model headers bring Eigen, whose defaulted "
    r"__host__ __device__ members nvcc warns about\.)\n", re.M)

# io/json_parser.hpp leaves out the simdjson kernels nvcc cannot parse, so .cu files that did it
# themselves before including a JSON reader drop their copy.
LOCAL_SIMDJSON_SETTINGS = re.compile(
    r"^// simdjson's x86 SIMD kernels do not pass nvcc's front end;.*\n(?://.*\n)*?"
    r"(?:#define SIMDJSON_IMPLEMENTATION_\w+ 0\n)+", re.M)

# tests/CMakeLists.txt: CUDA headers now live under backend/cuda/ and engine/.
CUDA_GLOB_OLD = "${PROJECT_SOURCE_DIR}/include/aq/backend/cuda/*.cuh)"
CUDA_GLOB_NEW = "${PROJECT_SOURCE_DIR}/include/aq/*.cuh)"
LAYER_TEST = """
# No header includes a header of a higher layer (docs/architecture.md).
add_test(NAME include_layers COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/check_layers.py)
"""
LAYER_TEST_AFTER = "set_tests_properties(single_header_current PROPERTIES WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})\n"

# README.md's one-line layout.
README_LAYOUT_OLD = "include/aq/    core/ formats/ quant/ model/ backend/{cpu,cuda}/ score/ search/ io/"
README_LAYOUT_NEW = ("include/aq/    core/ formats/ quant/ io/ model/ search/ score/ backend/{cpu,cuda}/ report/ "
                     "engine/ cli/ (layers, low to high: docs/architecture.md)")


def target_path(header):
    """The new path of a header (relative to include/aq/); exits naming a header without a row."""
    if header not in MOVES:
        sys.exit(f"relayout: include/aq/{header} has no row in MOVES (scripts/relayout.py): give it a place")
    return MOVES[header]


def current_headers():
    return sorted(p.relative_to(AQ).as_posix() for p in AQ.rglob("*") if p.is_file())


def check_map(headers):
    missing = [h for h in headers if h not in MOVES]
    if missing:
        sys.exit("relayout: no row in MOVES for:\n" + "\n".join(f"  include/aq/{h}" for h in missing))
    targets = {}
    for header in headers:
        new = MOVES[header]
        if new in targets:
            sys.exit(f"relayout: {header} and {targets[new]} would both become {new}")
        targets[new] = header


def path_pattern(moves):
    """One regex for every moved path, longest first, as a whole token, with an optional aq/ prefix."""
    olds = sorted(moves, key=len, reverse=True)
    alternatives = "|".join(re.escape(old) for old in olds)
    return re.compile(r"(?<![\w./-])((?:include/)?aq/)?(" + alternatives + r")(?![\w-]|\.\w)")


def rewrite_text(text, pattern, moves):
    return pattern.sub(lambda m: (m.group(1) or "") + moves[m.group(2)], text)


def files_to_rewrite():
    seen = set()
    for pattern in REWRITE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and not path.relative_to(ROOT).parts[0].startswith("build") and path not in seen:
                seen.add(path)
                yield path


def replace_once(text, old, new, path):
    """A fixed edit of a known file; says so when the file no longer has the text it expects."""
    if old not in text:
        print(f"relayout: {path.relative_to(ROOT)} no longer contains {old.strip()!r}: edit it by hand")
        return text
    return text.replace(old, new, 1)


def git(*args):
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the moves, change nothing")
    args = parser.parse_args()

    headers = current_headers()
    check_map(headers)
    if not args.dry_run and subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                           text=True, check=True).stdout:
        sys.exit("relayout: the working tree has changes; run it on a clean checkout so the move is one diff")
    moves = {h: MOVES[h] for h in headers if MOVES[h] != h}
    for old, new in moves.items():
        print(f"{old} -> {new}")
    if args.dry_run:
        return 0

    for old, new in moves.items():
        (AQ / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", f"include/aq/{old}", f"include/aq/{new}")

    pattern = path_pattern(moves)
    for path in files_to_rewrite():
        text = path.read_text(encoding="utf-8")
        new_text = rewrite_text(text, pattern, moves)
        wrappers = {MOVES["backend/cpu/eigen.hpp"], MOVES["io/json_parser.hpp"]}
        if path.is_relative_to(AQ) and path.relative_to(AQ).as_posix() not in wrappers:
            for direct, wrapper in WRAPPED_INCLUDES.items():
                new_text = re.sub(r"^" + re.escape(direct) + r"$", wrapper, new_text, flags=re.M)
        if path.suffix in (".cu", ".cuh"):
            new_text = EIGEN_PRAGMA_LINES.sub("", new_text)
            new_text = LOCAL_SIMDJSON_SETTINGS.sub("", new_text)
        if path == ROOT / "tests" / "CMakeLists.txt":
            new_text = replace_once(new_text, CUDA_GLOB_OLD, CUDA_GLOB_NEW, path)
            new_text = replace_once(new_text, LAYER_TEST_AFTER, LAYER_TEST_AFTER + LAYER_TEST, path)
        if path == ROOT / "README.md":
            new_text = replace_once(new_text, README_LAYOUT_OLD, README_LAYOUT_NEW, path)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    for folder in sorted(AQ.rglob("*"), reverse=True):  # folders the moves emptied
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
