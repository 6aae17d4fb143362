#!/usr/bin/env python3
"""The cost table of `bench/gpu_checks.sh cost` (issue 25): each unlearning
run's seconds and image-steps against the same-recipe exact retrain, next to
its Avg. Gap, from the files that phase leaves in the run folder.

    python3 bench/gpu_cost.py RUN_DIR SEED

Seconds are the runs' own wall time with their adversarial search (the
sidecars' `timing.total`; for the experiment's step, the seconds its meta
records, which add the search step's). Every run was alone on the device.
"""
import json
import sys
from pathlib import Path


def sidecar(p):
    return json.loads(Path(p).with_suffix(".json").read_text())


def steps(sc):
    # Checkpoint::image_steps: an unlearning run records it; a training run
    # sums its epochs' images.
    o = sc["origin"]
    if o["kind"] == "unlearn":
        return o["image_steps"]
    return sum(e["images"] or round(e["images_per_s"] * e["seconds"]) for e in sc["history"])


def main():
    run, seed = Path(sys.argv[1]), sys.argv[2]
    audit = json.loads((run / "cost" / "audit.json").read_text())
    gap = {Path(m["checkpoint"]).resolve(): m["avg_gap"] for m in audit["models"]}
    retrain = run / f"retrain-s{seed}-f0.1.safetensors"
    rt_s = json.loads(Path(f"{retrain}.meta.json").read_text())["seconds"]
    rt_steps = steps(sidecar(retrain))

    orig = run / f"original-s{seed}.safetensors"
    rows = [
        ("Original (nothing forgotten)", "", None, None, gap.get(orig.resolve())),
        ("Retrain (same recipe, exact)", "", rt_s, rt_steps, 0.0),
    ]
    for p in sorted(run.glob(f"unlearn-amun-s{seed}-f0.1-R-*.safetensors")):
        s = json.loads(Path(f"{p}.meta.json").read_text())["seconds"]
        rows.append(("AMUN, with D_R", "paper's cost: all of D_R, fp32, exact Alg. 1, every epoch", s, steps(sidecar(p)), gap.get(p.resolve())))
    for m, label, extra in [
        ("amun", "AMUN", ", fast search"),
        ("ft", "FT", ""),
        ("rl", "RL", ""),
        ("salun", "SalUn", ""),
        ("amun-search-bf16", "AMUN", ", fast search in bf16 at batch 512"),
    ]:
        p = run / "cost" / f"{m}.safetensors"
        if not p.exists():
            continue
        sc = sidecar(p)
        o = sc["origin"]
        # "stopped after 3 of 10 epochs: <why>" → its first clause.
        notes = "; ".join(n.split(":")[0] for n in o.get("notes", []))
        what = "defaults: retain budget 4, stop floor 0.01, precision auto" + extra
        rows.append((f"{label}, with D_R", what + (f" ({notes})" if notes else ""), o["timing"]["total"], steps(sc), gap.get(p.resolve())))

    print("| run | settings | seconds | × retrain | image-steps × retrain | Avg. Gap |")
    print("|---|---|---|---|---|---|")
    for name, what, s, n, g in rows:
        gs = "—" if g is None else f"{g:.2f}"
        if s is None:
            print(f"| {name} | {what} | — | — | — | {gs} |")
        else:
            print(f"| {name} | {what} | {s:.1f} | {s / rt_s:.2f} | {n / rt_steps:.2f} | {gs} |")


if __name__ == "__main__":
    main()
