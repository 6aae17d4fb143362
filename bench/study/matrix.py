#!/usr/bin/env python3
"""Issue 35's matrix, read from finished experiment folders: one table per
dataset and forget fraction (means ± std over the seeds), then every target
of the issue checked row by row, with the amount of each miss.

  bench/study/matrix.py RUN_DIR [RUN_DIR ...]     # folders of bench/study/calib35-*.toml

Targets (issue 35), each against numbers of the same folder:
- never worse than doing nothing: a calibrated row's Avg. Gap ≤ the
  original's + the noise floor (the `retrain (another seed)` row's gap);
- utility: a calibrated row's test accuracy ≥ the original's − (the
  retrain's own loss, if any) − noise, noise = 1.96 × the binomial standard
  error of the original's test accuracy on the audit's test images;
- defaults never collapse: a row at its defaults keeps test accuracy within
  that noise of the original's;
- cost: calibrated AMUN ≤ 0.3× the retrain at 10% and ≤ 0.05× at 1%
  (seconds and image-steps, as the report computes them).
- memorising model: calibrated AMUN's Avg. Gap within 1.0 of AMUN tuned
  against a retrain, where the folder has a `[tune]` row.
Standard library only.
"""
import json, math, os, sys

COLS = [("unlearn_acc", "UA"), ("retain_acc", "RA"), ("test_acc", "TA"), ("mia", "RMIA"), ("avg_gap", "Avg. Gap")]


def ms(row, key, digits=2):
    v = row[key]
    return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"


def audit_test_size(cfg):
    test = cfg["data"].get("test_limit") or 10000
    return test - (cfg.get("calibrate") or {}).get("holdout", 0)


def calibration_paths(report, fraction):
    out = {}
    for e in report["results"]:
        c = e.get("calibration")
        if c and abs(e["fraction"] - fraction) < 1e-9:
            ch = c["chosen"]
            path = " → ".join(f"{p['lr']:g}×{p['epochs']}" for p in ch.get("path", [])) or "original kept"
            out.setdefault(e["method"], []).append(f"s{e['seed']}: {path}")
    return out


def table(name, report, t):
    rows = {r["method"]: r for r in t["rows"]}
    frac = float(t["fraction"])
    print(f"\n### {name}, {frac:.0%} forgotten, with D_R ({rows['original']['runs']} seeds)\n")
    print("| method | " + " | ".join(c for _, c in COLS) + " | time × retrain | steps × retrain |")
    print("|---" * (len(COLS) + 3) + "|")
    for m, r in rows.items():
        cells = [ms(r, k) for k, _ in COLS]
        print(f"| {m} | " + " | ".join(cells) + f" | {ms(r, 'time_vs_retrain')} | {ms(r, 'steps_vs_retrain', 3)} |")
    paths = calibration_paths(report, frac)
    if paths:
        print("\nCalibration's choice (lr × epochs per leg):")
        for m, p in paths.items():
            print(f"- {m}: " + "; ".join(p))
    return rows, frac


def checks(rows, frac, n_test):
    orig, retrain = rows["original"], rows["retrain"]
    floor = rows.get("retrain (another seed)", {}).get("avg_gap", {}).get("mean")
    ta0 = orig["test_acc"]["mean"]
    noise = 196 * math.sqrt(max(ta0 / 100 * (1 - ta0 / 100), 1e-4) / n_test)
    retrain_loss = max(0.0, ta0 - retrain["test_acc"]["mean"])
    gap0 = orig["avg_gap"]["mean"]
    out = []
    for m, r in rows.items():
        if m in ("original", "retrain", "retrain (another seed)"):
            continue
        ta = r["test_acc"]["mean"]
        if m.endswith("(calibrated)"):
            if floor is not None:
                lim = gap0 + floor
                out.append(ok(r["avg_gap"]["mean"] <= lim, f"{m}: gap {r['avg_gap']['mean']:.2f} ≤ original {gap0:.2f} + floor {floor:.2f} = {lim:.2f}"))
            lim = ta0 - retrain_loss - noise
            out.append(ok(ta >= lim, f"{m}: TA {ta:.2f} ≥ {ta0:.2f} − retrain loss {retrain_loss:.2f} − noise {noise:.2f} = {lim:.2f}"))
        elif m.endswith("(tuned)"):
            # Tuned against a retrain: a reference for calibration, not a
            # default a user runs.
            out.append(f"- info: {m}: TA {ta:.2f} (original {ta0:.2f}, noise {noise:.2f})")
        else:
            lim = ta0 - noise
            out.append(ok(ta >= lim, f"{m} (defaults): TA {ta:.2f} ≥ {ta0:.2f} − noise {noise:.2f} = {lim:.2f}"))
    amun = rows.get("amun (calibrated)")
    if amun:
        cap = 0.3 if frac > 0.05 else 0.05
        for key, what in (("time_vs_retrain", "time"), ("steps_vs_retrain", "image-steps")):
            v = amun[key]["mean"]
            out.append(ok(v <= cap, f"amun (calibrated): {what} {v:.3f}× ≤ {cap}× the retrain"))
        cal = {m: r["avg_gap"]["mean"] for m, r in rows.items() if m.endswith("(calibrated)")}
        best = min(cal, key=cal.get)
        # A tie (both kept the original) counts as the closest.
        out.append(ok(cal["amun (calibrated)"] <= cal[best], f"closest calibrated: {best} {cal[best]:.2f} (amun {cal['amun (calibrated)']:.2f})"))
        out.append(f"- info: amun (calibrated) gap / original's = {amun['avg_gap']['mean'] / gap0:.2f}")
        tuned = rows.get("amun (tuned)")
        if tuned:
            g, t = amun["avg_gap"]["mean"], tuned["avg_gap"]["mean"]
            out.append(ok(g <= t + 1.0, f"amun (calibrated): gap {g:.2f} ≤ tuned {t:.2f} + 1.0 = {t + 1.0:.2f}"))
    print(f"\nTargets (noise on TA: {noise:.2f} at {n_test} test images; noise floor: {floor}):")
    for line in out:
        print(line)


def ok(cond, text):
    return f"- {'ok  ' if cond else 'MISS'} {text}"


def main():
    for d in sys.argv[1:]:
        p = os.path.join(d, "report.json")
        if not os.path.exists(p):
            print(f"\n{d}: no report.json yet")
            continue
        report = json.load(open(p))
        n_test = audit_test_size(report["config"])
        for t in report["tables"]:
            rows, frac = table(report["name"], report, t)
            checks(rows, frac, n_test)


if __name__ == "__main__":
    main()
