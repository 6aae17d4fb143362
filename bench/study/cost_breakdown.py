#!/usr/bin/env python3
"""Where calibrated AMUN's image-steps go, read from finished experiment
folders (issue 35's cost target; docs/CALIBRATION.md, "Where calibrated
AMUN's cost goes"): the adversarial search, the walk's epochs (images each)
and, not counted in image-steps, the forward passes of calibration's probes.

  bench/study/cost_breakdown.py RUN_DIR [RUN_DIR ...]

Every number is a multiple of the same-recipe exact retrain's image-steps
(the retrain's epochs × D_R). A probe forwards the forget set, the held-out
images and up to 1,000 retain images, once for the original and once after
every epoch; a forward is roughly a third of a training step, shown as
`~x` beside the count. Standard library only.
"""
import glob, json, os, re, sys


def load(path):
    with open(path) as f:
        return json.load(f)


def adversarial_steps(d, origin):
    adv = origin.get("adversarial")
    if not adv:
        return 0
    # The record names the set by the path it had; a folder moved or copied
    # with --reuse holds it under the same name.
    name = os.path.basename(adv["file"]).removesuffix(".safetensors") + ".json"
    return load(os.path.join(d, name))["summary"]["total_steps"]


def row(d, path):
    seed, frac = re.search(r"-s(\d+)-f([0-9.]+)-R", path).groups()
    origin = load(path)["origin"]
    cal = origin["calibration"]
    retrain = load(f"{d}/retrain-s{seed}-f{frac}.json")["origin"]
    n_train = load(f"{d}/original-s{seed}.json")["data"]["train_limit"]
    n_f, n_h = cal["forget_size"], cal["heldout_size"]
    per_retrain = retrain["epochs_done"] * (n_train - n_f)
    total, search, epochs = origin["image_steps"], adversarial_steps(d, origin), cal["epochs_run"]
    if epochs == 0:
        # The original kept before the first epoch: the set was never used,
        # and its search is not in the run's image-steps.
        search = 0
    walk = total - search
    probes = (epochs + 1) * (n_f + n_h + min(1000, n_train - n_f))
    x = lambda v: f"{v / per_retrain:.3f}x"
    return (
        f"{os.path.basename(d.rstrip('/')):16} s{seed} {float(frac) * 100:3.0f}%  "
        f"total {total:6} ({x(total)})  search {search:5} ({x(search)})  "
        f"epochs {epochs:2} x {walk // max(epochs, 1):5} = {walk:6} ({x(walk)})  "
        f"chosen at epoch {cal['chosen']['epoch']:2}  budget {cal['settings']['retain_budget']}  "
        f"probe forwards {probes:6} (~{probes / 3 / per_retrain:.3f}x)  retrain {per_retrain}"
    )


for d in sys.argv[1:]:
    for path in sorted(glob.glob(f"{d}/unlearn-amun-s*-f*-R-calibrated.json")):
        print(row(d, path))
