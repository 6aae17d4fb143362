#!/usr/bin/env python3
"""`registry apply`'s default cost cap, measured (issue 35): one request of a
fraction of the training set, applied with calibrated AMUN under the default
cap (1.0 × the exact retrain the batch replaces) and with
`--calibrate-max-cost none`, each on its own registry made from the same
trained model; then the exact retrain and `amun audit` of both results
against it (Avg. Gap). The recipe and sizes come from an issue-35 study TOML
(read with tomllib, never edited).

  bench/study/apply_cap.py TOML OUT_DIR [--dataset DIR] [--seed S]
      [--fraction 0.1] [--amun BIN] [--pre-cap]

--dataset replaces the TOML's (calib35-fashion.toml names FASHION_DIR: give
the folder bench/study/fashion_mnist.py wrote). --pre-cap runs a binary from
before the default cap: its "default" arm then passes
`--calibrate-max-cost 1` (the same cap, given) and its "none" arm no flag.
Prints one Markdown row per arm; every command's JSON is kept in OUT_DIR.
Standard library only (Python 3.11+).
"""
import argparse, json, os, shutil, subprocess, sys, time, tomllib


def run(cmd, out=None):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.monotonic() - t
    if out:
        with open(out, "w") as f:
            f.write(p.stdout)
        with open(out + ".err", "w") as f:
            f.write(p.stderr)
    return p, secs


def must(cmd, out=None):
    p, secs = run(cmd, out)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("toml")
    ap.add_argument("out")
    ap.add_argument("--dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--amun", default="target/release/amun")
    ap.add_argument("--pre-cap", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep the applies already in OUT_DIR")
    a = ap.parse_args()
    with open(a.toml, "rb") as f:
        cfg = tomllib.load(f)
    d, t = cfg["data"], cfg["train"]
    data = ["--dataset", a.dataset or d["dataset"], "--train-limit", str(d["train_limit"]),
            "--test-limit", str(d["test_limit"])]
    recipe = ["--epochs", str(t["epochs"]), "--batch-size", str(t["batch_size"]),
              "--lr", str(t["lr"]), "--schedule", t["schedule"], "--model", cfg["model"]]
    holdout = str(cfg["calibrate"]["holdout"])
    refs_n = str(cfg.get("rmia", {}).get("reference_models", 2))
    os.makedirs(a.out, exist_ok=True)
    o = lambda n: os.path.join(a.out, n)
    B, dev, seed = a.amun, ["--device", "cpu"], str(a.seed)
    if not os.path.exists(o("original.safetensors")):
        must([B, "train", *data, *recipe, "--seed", seed, *dev, "-q", "--out", o("original.safetensors")])
    if not os.path.exists(o("forget.json")):
        must([B, "split", *data, "--forget", str(a.fraction), "--seed", seed, "--out", o("forget.json")])
    if not os.path.exists(o("retrain.safetensors")):
        must([B, "train", *data, *recipe, "--seed", seed, *dev, "-q", "--exclude", o("forget.json"),
              "--out", o("retrain.safetensors")])
    if not os.path.exists(o("refs")):
        must([B, "rmia", "train-refs", *data, "--like", o("original.safetensors"), "--count", refs_n,
              "--seed", seed, *dev, "-q", "--out", o("refs")])
    arms = {"default": ["--calibrate-max-cost", "1"] if a.pre_cap else [],
            "none": [] if a.pre_cap else ["--calibrate-max-cost", "none"]}
    rows = {arm: apply_arm(B, o, arm, flags, seed, holdout, dev, a.reuse) for arm, flags in arms.items()}
    ckpts = [o("retrain.safetensors"), o("original.safetensors")]
    ckpts += [r["weights"] for r in rows.values() if "weights" in r]
    p, _ = must([B, "audit", "--checkpoint", *ckpts, "--forget", o("forget.json"), "--refs", o("refs"),
                 "--retrain", o("retrain.safetensors"), "--holdout-test", holdout, *dev, "--json"],
                o("audit.json"))
    gaps = {m["checkpoint"]: m for m in json.loads(p.stdout)["models"]}
    with open(o("retrain.json")) as f:
        rt = json.load(f)["origin"]
    n_forget = len(json.load(open(o("forget.json")))["indices"])
    retrain_steps = rt["epochs_done"] * (d["train_limit"] - n_forget)
    name = os.path.basename(a.out.rstrip("/"))
    print("| run | arm | unlearn s | image-steps × retrain | walk's cap × its retrain | epochs run | kept state "
          "| refused | forget / retain / test % | Avg. Gap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    orig = gaps[o("original.safetensors")]
    print(f"| {name} | original (nothing done) | – | – | – | – | – | – | {scores(orig)} | {orig['avg_gap']:.2f} |")
    for arm, r in rows.items():
        if r["refused"]:
            secs = "–" if r["secs"] != r["secs"] else f"{r['secs']:.0f} (wall)"
            print(f"| {name} | {arm} | {secs} | – | – | – | – | yes | – | – |")
            print(f"  {arm} refused: {r['err']}", file=sys.stderr)
            continue
        with open(r["weights"].removesuffix(".safetensors") + ".json") as f:
            steps = json.load(f)["origin"]["image_steps"]
        c, m = r["cost"], gaps[r["weights"]]
        cap = f"{c['fraction']:.3f}" if c else "none"
        print(f"| {name} | {arm} | {r['secs']:.0f} | {steps / retrain_steps:.3f} | {cap} | {r['epochs']} "
              f"| {r['kept']} | no | {scores(m)} | {m['avg_gap']:.2f} |")


def scores(m):
    s = m["audit"]["scores"]
    return f"{s['unlearn']:.1f} / {s['retain']:.1f} / {s['test']:.1f}"


def apply_arm(B, o, arm, flags, seed, holdout, dev, reuse):
    reg, out = o(f"registry-{arm}"), o(f"apply-{arm}.json")
    if reuse and os.path.exists(out) and os.path.getsize(out) == 0:
        with open(out + ".err") as f:
            return {"secs": float("nan"), "refused": True, "err": f.read().strip()[-800:]}
    if not (reuse and os.path.exists(out)):
        shutil.rmtree(reg, ignore_errors=True)
        must([B, "registry", "create", "--registry", reg, "--checkpoint", o("original.safetensors"),
              "--holdout-test", holdout, "--refs", o("refs"), "--seed", seed, "-q"])
        must([B, "registry", "add", "--registry", reg, o("forget.json")])
        p, secs = run([B, "registry", "apply", "--registry", reg, "--method", "amun", *flags, *dev,
                       "--json"], out)
        if p.returncode != 0:
            return {"secs": secs, "refused": True, "err": p.stderr.strip()[-800:]}
    with open(out) as f:
        v = json.load(f)["version"]
    cal = json.loads(v["calibration"])[0]["calibration"]
    w = v["weights"] if os.path.isabs(v["weights"]) else os.path.join(reg, v["weights"])
    ch = cal["chosen"]
    kept = f"lr {ch.get('lr')} epoch {ch.get('epoch')}"
    return {"secs": v["seconds"], "refused": False, "weights": w, "cost": cal.get("cost"),
            "kept": kept, "epochs": cal["epochs_run"]}


if __name__ == "__main__":
    main()
