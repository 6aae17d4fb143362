#!/usr/bin/env python3
"""The cost study of the retain budget, the stop floor and the fast search.

Runs one experiment config (cifar.toml or mnist.toml) once per variant, each
in a hard-linked copy of a base run folder, so every variant shares the base's
original models, forget sets, retrains and RMIA references bit for bit and
only the unlearning steps whose settings changed are recomputed (artifacts are
replaced by rename, never written in place, so the links are safe). Prints one
line per variant and method: Avg. Gap, seconds and image-steps against the
retrain (means over the config's seeds, ± the std).

  bench/study/run.py CONFIG BASE_DIR OUT_DIR VARIANT [VARIANT ...]

A variant is NAME or NAME:KEY=VALUE,KEY=VALUE with keys as method.key, e.g.
  k4:amun.finetune.retain_budget=4,ft.finetune.retain_budget=4
`*` as the method applies a key to every method of the config. The base
variant (no keys) is the config as written. Needs ./amun built.
"""
import json, os, re, shutil, subprocess, sys, time

def variant_config(text, keys, name):
    methods = re.findall(r"^\[methods\.([a-z0-9+-]+)\]$", text, re.M)
    per = {m: [] for m in methods}
    for kv in keys:
        k, v = kv.split("=", 1)
        m, key = k.split(".", 1)
        for target in (methods if m == "*" else [m]):
            per[target].append(f"{key} = {v}")
    for m, lines in per.items():
        if lines:
            text = text.replace(f"[methods.{m}]\n", f"[methods.{m}]\n" + "\n".join(lines) + "\n", 1)
    return re.sub(r'^name = ".*"$', f'name = "{name}"', text, count=1, flags=re.M)

def main():
    cfg, base, out = sys.argv[1:4]
    amun = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "amun")
    text = open(cfg).read()
    os.makedirs(out, exist_ok=True)
    for v in sys.argv[4:]:
        name, _, rest = v.partition(":")
        keys = [k for k in rest.split(",") if k]
        d = os.path.join(out, name)
        if not os.path.exists(os.path.join(d, "report.json")):
            if os.path.exists(d):
                shutil.rmtree(d)
            c = os.path.join(out, name + ".toml")
            open(c, "w").write(variant_config(text, keys, os.path.basename(cfg).split(".")[0] + "-" + name))
            t = time.time()
            with open(os.path.join(out, name + ".log"), "w") as log:
                subprocess.run([amun, "experiment", "--config", c, "--out", d, "--reuse", base, "-q"],
                               check=True, stdout=log, stderr=log)
            print(f"# {name}: {time.time() - t:.0f} s", file=sys.stderr)
        r = json.load(open(os.path.join(d, "report.json")))
        for t in r["tables"]:
            for row in t["rows"]:
                s = lambda k: f"{row[k]['mean']:.2f}±{row[k]['std']:.2f}"
                print(f"{name:14} retain={t['with_retain']!s:5} {row['method']:20} gap {s('avg_gap'):11} "
                      f"UA {row['unlearn_acc']['mean']:5.1f} TA {row['test_acc']['mean']:5.1f} "
                      f"MIA {row['mia']['mean']:5.1f} time× {s('time_vs_retrain'):11} steps× {s('steps_vs_retrain')}")
        sys.stdout.flush()

main()
