#!/usr/bin/env python3
"""Replays recorded continuing walks under variants of the walk's rule.

    bench/study/walk_replay.py RUN_DIR... [--variant NAME=patience,stall[,carry] ...]

A port of `LegRun` and `Walker` (crates/amun/src/unlearn/calibrate/walk.rs)
that trains nothing: each epoch's state is looked up in the run's recorded
probe table by (leg index, path). The recorded rule (the run's own
settings) is replayed first and must give the recorded epochs and kept
state. A variant then follows the same tables until it asks for a state
the walk never recorded (a leg at another rung or from another state after
an earlier step down): there it is cut and reported as `unrecorded`, with
the epochs run and best state up to that point. `carry` is the variant
where a leg that steps down after lost utility hands its count of epochs
without a better state on to the next leg (the stall rule counts across
the step down).
"""
import argparse
import json
from pathlib import Path

from stall_replay import continuing_walks


class Unrecorded(Exception):
    pass


def verdict(row, cal):
    diff = row["probe"]["forget_acc"] - cal["before"]["heldout_acc"]
    if row.get("reached", False):
        return "R"
    if diff < -cal["accuracy_band"] or not row.get("membership_ok", True):
        return "O"
    if not row["keeps_utility"]:
        return "L"
    return "U"


def admissible(row):
    return row["keeps_utility"] and row.get("membership_ok", True)


def key(row):
    return (admissible(row), row.get("reached", False), -row["score"])


def extended(path, lr, n):
    if path and path[-1][0] == lr:
        return path[:-1] + ((lr, path[-1][1] + n),)
    return path + ((lr, n),)


def rows_by_path(cal):
    out = {}
    for row in cal["table"][1:]:
        p = tuple((leg["lr"], leg["epochs"]) for leg in row["path"])
        out.setdefault(p, []).append(row)
    return out


def walk(cal, patience, stall, carry, legs_seen=None):
    """(epochs, kept row, why, legs) of `cal`'s walk under the rule.

    `legs_seen`: the legs (index, start path, lr) the recorded walk ran; a
    leg outside it raises Unrecorded (its states were never measured)."""
    s = cal["settings"]
    ladder = s["lrs"]
    table = cal["table"]
    target, ab = cal["before"]["heldout_acc"], cal["accuracy_band"]
    budget = cal["epochs_worst_case"]
    by_path = rows_by_path(cal)
    rung = ladder.index(table[1]["path"][0]["lr"])
    ceiling, path, done = len(ladder), (), 0
    wdiff = table[0]["probe"]["forget_acc"] - target
    best = table[0]
    legs, carried, total = [], 0, 0
    state = {}
    for k in range(100):
        if total >= budget:
            return total, best, "budget", legs
        lr = ladder[rung]
        leg_id = (k, path, lr)
        if legs_seen is not None and leg_id not in legs_seen:
            state.update(done=total, best=best, legs=legs)
            raise Unrecorded(state)
        legs.append(leg_id)
        can_climb = rung + 1 < ceiling
        shock, since, ran, end, last = 0, carried, 0, "budget", None
        carried = 0
        for e in range(1, budget - total + 1):
            p = extended(path, lr, e)
            cands = by_path.get(p)
            if not cands:
                state.update(done=total + ran, best=best, legs=legs)
                raise Unrecorded(state)
            c = cands[0]
            ran, last = e, c
            if key(c) > key(best):
                best, since = c, 0
            else:
                since += 1
            v = verdict(c, cal)
            if v == "R":
                end = "reached"
                break
            if v == "O" and admissible(c):
                end = "over"
                break
            if v in "OL":
                shock += 1
                if shock > patience:
                    end = "lost" if v == "L" else "over"
                    break
                continue
            shock = 0
            if not can_climb:
                if since >= stall:
                    end = "stalled"
                    break
                continue
            diff = c["probe"]["forget_acc"] - target
            prog = (wdiff - diff) / e
            if prog <= 0 or diff / prog > s["climb_after"]:
                end = "climb"
                break
        if ran:
            path = extended(path, lr, ran)
            done += ran
            total += ran
            wdiff = last["probe"]["forget_acc"] - target
        if end in ("reached", "budget", "stalled"):
            return total, best, end, legs
        if carry == "all":
            carried = since
        if end == "climb":
            rung += 1
        elif end == "lost":
            if rung == 0:
                return total, best, "lost at the lowest", legs
            ceiling, rung = rung, rung - 1
            carried = since if carry else 0
        else:  # over
            if rung == 0:
                return total, best, "over at the lowest", legs
            path = tuple((leg["lr"], leg["epochs"]) for leg in best.get("path", []))
            done = best["epoch"]
            wdiff = best["probe"]["forget_acc"] - target
            ceiling, rung = rung, rung - 1
    raise RuntimeError("walk did not end")


def gap_of(result):
    return result.get("avg_gap")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--variant", nargs="*", default=[])
    args = ap.parse_args()
    variants = [("p1", 1, 3, None), ("p0", 0, 3, None), ("s2", 2, 2, None),
                ("p1s2", 1, 2, None), ("carry", 2, 3, "lost"), ("carry-all", 2, 3, "all"),
                ("s2carry", 2, 2, "lost")]
    for v in args.variant:
        name, spec = v.split("=")
        parts = spec.split(",")
        variants.append((name, int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else None))
    print("run method frac seed | recorded (epochs, kept) | " +
          " | ".join(n for n, *_ in variants))
    for run, r, cal in continuing_walks(args.runs):
        s = cal["settings"]
        n, best, why, legs = walk(cal, s["patience"], s["stall"], False)
        ok = (n, best["epoch"]) == (cal["epochs_run"], cal["chosen"]["epoch"])
        cells = []
        for name, pat, st, carry in variants:
            try:
                vn, vb, vwhy, _ = walk(cal, pat, st, carry, set(legs))
                same = vb.get("path") == best.get("path")
                cells.append(f"{vn} ({vb['epoch']}{'' if same else ' DIFF score %.2f vs %.2f' % (vb['score'], best['score'])})")
            except Unrecorded as u:
                st_ = u.args[0]
                b = st_["best"]
                cells.append(f"unrec@{st_['done']} (best so far {b['epoch']}{'=' if b is best else '≠'})")
        print(f"{run.name} {r['method']} {r['fraction']} s{r['seed']} | "
              f"{cal['epochs_run']} ({cal['chosen']['epoch']}){'' if ok else ' MISMATCH %s %s %s' % (n, best['epoch'], why)} | "
              + " | ".join(cells))


if __name__ == "__main__":
    main()
