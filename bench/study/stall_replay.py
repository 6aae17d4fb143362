#!/usr/bin/env python3
"""Replays the continuing walks an experiment recorded under other `stall` values.

    bench/study/stall_replay.py RUN_DIR... [--stall 3 4 5 6 8]

For every calibrated run in RUN_DIR/report.json it prints the epochs the walk
ran and the state it kept, then for each `stall` value the (epochs, kept epoch)
the stall rule would have given on the same trajectory. A stall only ends a
walk earlier, so the recorded states up to that point are the ones it would
have seen. This is a port of `LegRun`'s rule for reading tables, not the rule
itself (crates/amun/src/unlearn/calibrate/walk.rs is): its verdicts come from the
recorded flags, and its legs from the recorded paths. Its stop epochs can be
off by a few where a walk went back to its best state, but its kept states
match the Rust rule on the issue-35 matrix (docs/CALIBRATION.md).
"""
import argparse
import json
from pathlib import Path

LADDER = [0.001, 0.003, 0.01, 0.03, 0.1]


def better_key(row):
    """`calibrate::better`'s order: admissible, then reached, then score."""
    admissible = row["keeps_utility"] and row.get("membership_ok", True)
    return (admissible, row.get("reached", False), -row["score"])


def replay(cal, stall):
    """(epochs run, epoch kept) of the recorded walk `cal` under `stall`."""
    table = cal["table"]
    target = cal["before"]["heldout_acc"]
    band = cal["accuracy_band"]
    best, ceiling, since = table[0], len(LADDER), 0
    leg_lr, prev_legs = None, []
    for row in table[1:]:
        legs = [(leg["lr"], leg["epochs"]) for leg in row["path"]]
        lr = legs[-1][0]
        if lr != leg_lr or legs[:-1] != prev_legs[:-1]:
            # A new leg; a step down means the rate above is never climbed again.
            if leg_lr is not None and LADDER.index(lr) < LADDER.index(leg_lr):
                ceiling = min(ceiling, LADDER.index(leg_lr))
            since, leg_lr = 0, lr
        prev_legs = legs
        if better_key(row) > better_key(best):
            best, since = row, 0
        else:
            since += 1
        under = (
            row["keeps_utility"]
            and row.get("membership_ok", True)
            and not row.get("reached", False)
            and row["probe"]["forget_acc"] > target - band
        )
        can_climb = LADDER.index(lr) + 1 < ceiling
        if under and not can_climb and since >= stall:
            return row["epoch"], best["epoch"]
    return table[-1]["epoch"], best["epoch"]


def continuing_walks(runs):
    """(run folder, result row, calibration record) of every continuing
    walk the run folders' reports recorded (more than one probed state)."""
    for run in runs:
        report = json.loads((run / "report.json").read_text())
        for r in report["results"]:
            cal = r.get("calibration")
            if not cal or len(cal["table"]) <= 1:
                continue
            if cal["settings"].get("walk", "continue") == "continue":
                yield run, r, cal


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--stall", nargs="+", type=int, default=[3, 4, 5, 6, 8])
    args = ap.parse_args()
    for run, r, cal in continuing_walks(args.runs):
        got = ", ".join(f"{s}: {replay(cal, s)}" for s in args.stall)
        print(
            f"{run.name} {r['method']} {r['fraction']} s{r['seed']}: recorded "
            f"({cal['epochs_run']}, {cal['chosen']['epoch']}); stall {got}"
        )


if __name__ == "__main__":
    main()
