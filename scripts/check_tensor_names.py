#!/usr/bin/env python3
"""Checks that every Qwen3-VL tensor name is spelled once in include/: in the tensor schema.

The names are the string literals of include/aq/model/qwen3_vl/schema.hpp that look like a name
or a piece of one (module paths such as self_attn.q_proj, the part roots, the indexed lists such
as layers.*, the .weight/.bias suffixes). Each must occur exactly once as a string literal across
include/ (comments do not count), and no other name-like literal in include/ (no spaces: not a
message) may contain a module path or root as a dotted component (e.g. "self_attn.q_proj.weight"
or "attn.qkv" being built outside the schema).
Exit status 1 lists every violation; 0 prints how many names were checked.

Usage: check_tensor_names.py [repository root]  (default: the parent of this script's folder)
"""

import pathlib
import re
import sys

SCHEMA = pathlib.Path("include/aq/model/qwen3_vl/schema.hpp")
NAME = re.compile(r"\.?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*(\.\*)?")
NAME_LIKE = re.compile(r"[A-Za-z0-9_.*]*[A-Za-z][A-Za-z0-9_.*]*")  # no spaces: a name, not prose
HEADER_SUFFIXES = {".hpp", ".cuh", ".h", ".cu", ".cpp"}


def string_literals(text):
    """The string literals of C++ source text, in order (comments and char literals skipped)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
        elif c == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif c == '"' and i > 0 and text[i - 1] == "R" and not (text[i - 2 : i - 1].isalnum() or text[i - 2 : i - 1] == "_"):
            open_paren = text.index("(", i)
            close = ")" + text[i + 1 : open_paren] + '"'
            end = text.index(close, open_paren)
            out.append(text[open_paren + 1 : end])
            i = end + len(close)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i + 1 : j])
            i = j + 1
        elif c.isalnum() or c == "_":  # skip identifiers whole (a digit separator ' is not a char literal)
            while i < n and (text[i].isalnum() or text[i] in "_'"):
                i += 1
        else:
            i += 1
    return out


def schema_names(root):
    return sorted({s for s in string_literals((root / SCHEMA).read_text()) if NAME.fullmatch(s)})


def contains_component(literal, name):
    """Whether `name` occurs in `literal` bounded by dots or the literal's ends."""
    stem = name[:-1] if name.endswith("*") else name  # layers.* -> "layers." followed by anything
    start = literal.find(stem)
    while start >= 0:
        end = start + len(stem)
        before_ok = start == 0 or literal[start - 1] == "." or stem.startswith(".")
        after_ok = stem.endswith(".") or end == len(literal) or literal[end] == "."
        if before_ok and after_ok:
            return True
        start = literal.find(stem, start + 1)
    return False


def main():
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent
    names = schema_names(root)
    if not names:
        print(f"no names found in {SCHEMA}")
        return 1
    # Indexed lists (layers.*) are common words elsewhere (the manifest's "layers" map): they are
    # checked as exact literals only; suffixes (.weight) likewise.
    fragment_names = [n for n in names if not n.endswith("*") and not n.startswith(".")]
    exact = {name: [] for name in names}
    problems = []
    for path in sorted((root / "include").rglob("*")):
        if not path.is_file() or path.suffix not in HEADER_SUFFIXES:
            continue
        rel = path.relative_to(root)
        for literal in string_literals(path.read_text(errors="replace")):
            if literal in exact:
                exact[literal].append(str(rel))
            elif rel != SCHEMA and NAME_LIKE.fullmatch(literal):
                for name in fragment_names:
                    if contains_component(literal, name):
                        problems.append(f'{rel}: "{literal}" spells the schema name "{name}"')
    for name, where in exact.items():
        if len(where) != 1:
            problems.append(f'"{name}" occurs {len(where)} times as a literal: {", ".join(where) or "nowhere"}')
    if problems:
        print("tensor names spelled outside the schema (or more than once):")
        for p in problems:
            print("  " + p)
        return 1
    print(f"{len(names)} tensor names, each spelled once (in {SCHEMA})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
