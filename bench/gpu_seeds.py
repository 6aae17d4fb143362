#!/usr/bin/env python3
"""One Table 1 over the seeds of several `amun experiment` reports of the
same config, run in different device leases (one seed per lease):

    python3 bench/gpu_seeds.py docs/gpu/report.json docs/gpu/s1/report.json

Each run's Avg. Gap is taken against its own seed's retrain, as the report
does; then mean ± sample std over the seeds (gap.rs's `mean_std`). Refuses
reports of different configs (apart from `seeds`, `device`, and method tables that
spell out what another report's defaults were: those are printed) or
repeating a seed.
"""
import json
import statistics
import sys
from collections import defaultdict

METRICS = [("UA", "unlearn"), ("RA", "retain"), ("TA", "test"), ("RMIA AUC", "mia")]


def main(paths):
    reports = [json.load(open(p)) for p in paths]
    def rest(c):
        return {k: v for k, v in c.items() if k not in ("seeds", "methods", "device")}

    first = reports[0]["config"]
    runs, seen = [], set()
    for p, r in zip(paths, reports):
        cfg = r["config"]
        if rest(cfg) != rest(first) or sorted(cfg["methods"]) != sorted(first["methods"]):
            sys.exit(f"{p}: another config than {paths[0]} (apart from seeds)")
        # A method's table may name what was its default when the other
        # report ran (the config pins the paper's costs since issue 21):
        # said, not refused.
        for m, t in cfg["methods"].items():
            if t != first["methods"][m]:
                print(f"note: {p} sets {m} to {json.dumps(t)}, {paths[0]} to {json.dumps(first['methods'][m])}", file=sys.stderr)
        for res in r["results"]:
            key = (res["seed"], res["with_retain"], res["method"])
            if key in seen:
                sys.exit(f"{p}: seed {res['seed']} {res['method']} is in an earlier report too")
            seen.add(key)
            runs.append(res)

    retrain = {r["seed"]: r["audit"]["scores"] for r in runs if r["method"] == "retrain"}
    seeds = sorted(retrain)
    cells = defaultdict(list)  # (with_retain, method) -> [(scores, gap)]
    for r in runs:
        rt = retrain.get(r["seed"])
        if rt is None:
            sys.exit(f"seed {r['seed']} has no retrain")
        s = r["audit"]["scores"]
        gap = sum(abs(s[k] - rt[k]) for _, k in METRICS) / len(METRICS)
        cells[(r["with_retain"], r["method"])].append((s, gap))

    def stat(xs):
        if len(xs) < 2:
            return f"{xs[0]:.2f}"
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"

    order = [m for m in dict.fromkeys(r["method"] for r in runs)]
    print(f"seeds {seeds}; mean ± std over the seeds (Avg. Gap against each seed's retrain)")
    for with_retain, title in [(True, "With D_R"), (False, "Without D_R")]:
        print(f"\n{title}:\n")
        print("| method | runs | " + " | ".join(n for n, _ in METRICS) + " | Avg. Gap |")
        print("|---|---|" + "---|" * (len(METRICS) + 1))
        for m in order:
            rows = cells.get((with_retain, m)) or cells.get((None, m))
            if not rows:
                continue
            vals = [stat([s[k] for s, _ in rows]) for _, k in METRICS]
            print(f"| {m} | {len(rows)} | " + " | ".join(vals) + f" | {stat([g for _, g in rows])} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
