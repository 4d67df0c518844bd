#!/usr/bin/env python3
"""Sets a ModelOpt auto_quantize result beside aq's (both in the "aq.autoquant.compare/v1" JSON of README.md)
and prints one table: speed and memory ratios (ModelOpt / aq), per-recipe score agreement (Spearman rank
correlation, max relative difference, over groups where both have a score), agreement of the chosen
recipes, and the effective bits and total score of each.

Scores compared are "raw_scores" (before ModelOpt's monotone clamp) when both files have them, else "scores".
Relative difference of a group: |aq - ref| / |ref| (groups with ref = 0 are skipped); "max rel (>=1%)" keeps
only groups whose reference score is at least 1% of that recipe's largest reference score.

Usage: compare.py MODELOPT.json AQ.json [--json OUT.json]     (pure Python 3, no third-party modules)
Exit status 0; 2 when the files do not describe the same run (different formats, data or group sets).
"""
import argparse
import json
import math
import sys

SCHEMA = "aq.autoquant.compare/v1"


def num(x):
    if isinstance(x, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[x]
    return None if x is None else float(x)


def load(path):
    with open(path) as f:
        d = json.load(f)
    if d.get("schema") != SCHEMA:
        sys.exit(f"{path}: schema {d.get('schema')!r}, expected {SCHEMA!r}")
    groups = {}
    for g in d["groups"]:
        name = g["name"][:-len(".quant_recipe")] if g["name"].endswith(".quant_recipe") else g["name"]
        groups[name] = g
    return d, groups


def ranks(values):
    """Average ranks (1-based), ties share the mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return r


def spearman(a, b):
    if len(a) < 2:
        return math.nan
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else math.nan


def ratio(a, b):
    a, b = num(a), num(b)
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x, spec=".4g"):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, spec) if isinstance(x, float) else str(x)


def compare(ref, aq):
    dr, gr = ref
    da, ga = aq
    problems = []
    if dr["run"].get("formats") != da["run"].get("formats"):
        problems.append(f"formats differ: {dr['run'].get('formats')} vs {da['run'].get('formats')}")
    if dr["run"].get("data_sha256") and da["run"].get("data_sha256") and \
            dr["run"]["data_sha256"] != da["run"]["data_sha256"]:
        problems.append("calibration data differ (data_sha256)")
    common = [n for n in gr if n in ga]
    only_ref = [n for n in gr if n not in ga]
    only_aq = [n for n in ga if n not in gr]
    if only_ref or only_aq:
        problems.append(f"group sets differ: {len(only_ref)} only in ModelOpt (e.g. {only_ref[:2]}), "
                        f"{len(only_aq)} only in aq (e.g. {only_aq[:2]})")

    use_raw = all("raw_scores" in g for g in gr.values()) and all("raw_scores" in g for g in ga.values())
    key = "raw_scores" if use_raw else "scores"
    recipes = []
    for n in common:
        for f in gr[n]["formats"]:
            if f != "none" and f not in recipes:
                recipes.append(f)
    per_recipe = {}
    for r in recipes:
        xs, ys = [], []
        for n in common:
            fr, fa = gr[n]["formats"], ga[n]["formats"]
            if r in fr and r in fa:
                x, y = num(gr[n][key][fr.index(r)]), num(ga[n][key][fa.index(r)])
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                    xs.append(x)
                    ys.append(y)
        top = max((abs(x) for x in xs), default=0.0)
        rel = [abs(y - x) / abs(x) for x, y in zip(xs, ys) if x != 0]
        rel_big = [abs(y - x) / abs(x) for x, y in zip(xs, ys) if x != 0 and abs(x) >= 0.01 * top]
        per_recipe[r] = {"groups": len(xs), "spearman": spearman(xs, ys),
                         "max_rel_diff": max(rel) if rel else None,
                         "max_rel_diff_ge_1pct": max(rel_big) if rel_big else None,
                         "sum_ref": sum(xs), "sum_aq": sum(ys)}
    same = sum(1 for n in common if gr[n].get("chosen") == ga[n].get("chosen"))

    def tied(n):
        """aq's choice costs and scores (in ModelOpt's clamped scores) the same as ModelOpt's: an ILP tie."""
        g, a, b = gr[n], gr[n].get("chosen"), ga[n].get("chosen")
        if a == b:
            return True
        if a not in g["formats"] or b not in g["formats"]:
            return False
        i, j = g["formats"].index(a), g["formats"].index(b)
        return num(g["scores"][i]) == num(g["scores"][j]) and g["costs"][i] == g["costs"][j]
    same_tie = sum(1 for n in common if tied(n))
    conf = [n for n in common if len(gr[n]["formats"]) > 1]
    same_conf = sum(1 for n in conf if gr[n].get("chosen") == ga[n].get("chosen"))
    tr, ta = dict(dr.get("timing_s", {})), dict(da.get("timing_s", {}))
    for t in (tr, ta):  # end to end: checkpoint load plus the search itself
        if num(t.get("model_load")) is not None and num(t.get("auto_quantize")) is not None:
            t["load_and_auto_quantize"] = num(t["model_load"]) + num(t["auto_quantize"])
    mr, ma = dr.get("memory_bytes", {}), da.get("memory_bytes", {})
    return {
        "problems": problems, "score_key": key, "common_groups": len(common),
        "timing_ratio": {k: ratio(tr.get(k), ta.get(k)) for k in
                         ("auto_quantize", "calibration", "scoring", "search", "model_load", "load_and_auto_quantize")},
        "timing_s": {"modelopt": tr, "aq": ta},
        "memory_ratio": {k: ratio(mr.get(k), ma.get(k)) for k in ("peak_allocated", "peak_reserved")},
        "memory_bytes": {"modelopt": mr, "aq": ma},
        "scores": per_recipe,
        "chosen_same_pct": 100.0 * same / len(common) if common else None,
        "chosen_same_or_tied_pct": 100.0 * same_tie / len(common) if common else None,
        "chosen_same_configurable_pct": 100.0 * same_conf / len(conf) if conf else None,
        "effective_bits": {"modelopt": num(dr["result"]["effective_bits"]),
                           "aq": num(da["result"]["effective_bits"])},
        "total_score": {"modelopt": num(dr["result"]["total_score"]), "aq": num(da["result"]["total_score"])},
        "tools": {"modelopt": dr["tool"], "aq": da["tool"]},
    }


def print_table(c):
    """Columns: ModelOpt's value, aq's value, and their ratio (ModelOpt / aq) or, for rows about agreement,
    the agreement figure itself."""
    rows = []
    t = c["timing_s"]
    for k in ("auto_quantize", "calibration", "scoring", "search", "model_load", "load_and_auto_quantize"):
        rows.append((f"time {k} [s]", fmt(num(t["modelopt"].get(k))), fmt(num(t["aq"].get(k))),
                     fmt(c["timing_ratio"][k])))
    m = c["memory_bytes"]
    for k in ("peak_allocated", "peak_reserved"):
        a, b = num(m["modelopt"].get(k)), num(m["aq"].get(k))
        rows.append((f"memory {k} [GiB]", fmt(a / 2**30 if a is not None else None),
                     fmt(b / 2**30 if b is not None else None), fmt(c["memory_ratio"][k])))
    rows.append(("effective bits", fmt(c["effective_bits"]["modelopt"], ".6f"),
                 fmt(c["effective_bits"]["aq"], ".6f"),
                 fmt(ratio(c["effective_bits"]["modelopt"], c["effective_bits"]["aq"]), ".6f")))
    rows.append(("total score", fmt(c["total_score"]["modelopt"], ".6e"), fmt(c["total_score"]["aq"], ".6e"),
                 fmt(ratio(c["total_score"]["modelopt"], c["total_score"]["aq"]))))
    rows.append(("same chosen recipe [% of groups]", "", "", fmt(c["chosen_same_pct"], ".1f")))
    rows.append(("same chosen recipe [% of configurable]", "", "", fmt(c["chosen_same_configurable_pct"], ".1f")))
    rows.append(("same chosen or ModelOpt-tied [% of groups]", "", "", fmt(c["chosen_same_or_tied_pct"], ".1f")))
    for r, s in c["scores"].items():
        rows.append((f"{r}: sum of scores ({s['groups']} groups)", fmt(s["sum_ref"], ".6e"),
                     fmt(s["sum_aq"], ".6e"), fmt(ratio(s["sum_ref"], s["sum_aq"]))))
        rows.append((f"{r}: Spearman rho", "", "", fmt(s["spearman"], ".6f")))
        rows.append((f"{r}: max rel diff", "", "", fmt(s["max_rel_diff"])))
        rows.append((f"{r}: max rel diff (ref >= 1% of max)", "", "", fmt(s["max_rel_diff_ge_1pct"])))
    head = ("quantity", f"modelopt {c['tools']['modelopt'].get('version', '')}",
            f"aq {c['tools']['aq'].get('version', '')}", "modelopt/aq, agreement")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
    print(f"scores compared: {c['score_key']}, {c['common_groups']} common groups")
    for p in c["problems"]:
        print("WARNING:", p)


def json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modelopt_json")
    ap.add_argument("aq_json")
    ap.add_argument("--json", help="also write the comparison as JSON")
    args = ap.parse_args()
    c = compare(load(args.modelopt_json), load(args.aq_json))
    print_table(c)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe(c), f, indent=1, sort_keys=True)
            f.write("\n")
    return 2 if c["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
