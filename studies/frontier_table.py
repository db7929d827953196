"""The tables of docs/frontier.md from the JSON rows of studies/lira_shadows.py and
studies/colluding_server.py: mean ± the half-width of the 95% Student-t interval over
seeds (`fedgan_jax.evaluation.intervals`), one table per threat model.

    PYTHONPATH=. python studies/frontier_table.py \
        --lira=runs/frontier_lira_seed0.json,runs/frontier_lira_seed1.json,... \
        --colluding=runs/frontier_colluding.json
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.evaluation import intervals  # noqa: E402

_LIRA = flags.DEFINE_list("lira", [], "JSON files of studies/lira_shadows.py --json.")
_COLLUDING = flags.DEFINE_string("colluding", None, "JSON of studies/colluding_server.py.")

PARTICIPANT = ("label_rule", "loss_calibrated", "lira", "lira_offline", "lira_global", "lira_snap")
SERVER = ("label_rule", "loss_calibrated", "fedmia_loss", "fedmia_cosine", "source_inference")


def cell(values) -> str:
    mean, _, half = intervals.mean_std_ci95(values)
    n = len(values)
    return f"{mean:.3f} ± {half:.3f}" if half is not None else f"{mean:.3f} (n={n})"


def participant(paths) -> None:
    rows, meta, seen = [], [], {}
    for path in paths:
        with open(path) as f:
            got = json.load(f)
        for r in got["rows"]:
            # Runs with other S repeat the seed's real federation and passive scores: keep
            # one, and say whether the repeat reproduced it.
            key = (r["seed"], r["pool"], r["attack"], r["shadows"])
            if key in seen:
                same = all(seen[key][k] == v for k, v in r.items() if k != "seconds")
                print(f"  repeated {key}: {'identical' if same else 'DIFFERS'}")
                continue
            seen[key] = r
            rows.append(r)
        meta.append((got["commit"][:7], " ".join(got["argv"][1:])))
    accuracy = {r["seed"]: r["accuracy"] for r in rows if r["attack"] == "test_accuracy"}
    seconds = {(r["seed"], r["shadows"]): r["seconds"] for r in rows if r["shadows"]}
    print("Participant (studies/lira_shadows.py)")
    for commit, argv in meta:
        print(f"  commit {commit}: {argv}")
    print("  test accuracy per seed:", {s: round(a, 3) for s, a in sorted(accuracy.items())})
    print("  wall seconds per (seed, S):", {k: round(t) for k, t in sorted(seconds.items())})
    print("\n| pool | attack | S | seeds | AUC | TPR@1%FPR | TPR@0.1%FPR |")
    print("|---|---|---|---|---|---|---|")
    for pool in ("within", "strict"):
        keys = sorted({r["shadows"] for r in rows if r["pool"] == pool})
        for attack in PARTICIPANT:
            for s in keys:
                rs = [
                    r for r in rows if (r["pool"], r["attack"], r["shadows"]) == (pool, attack, s)
                ]
                if not rs:
                    continue
                cells = [cell([r[k] for r in rs]) for k in ("auc", "tpr_at_1pct_fpr")]
                cells.append(cell([r["tpr_at_0.1pct_fpr"] for r in rs]))
                print(f"| {pool} | {attack} | {s or '-'} | {len(rs)} | " + " | ".join(cells) + " |")


def server(path) -> None:
    with open(path) as f:
        got = json.load(f)
    rows = got["rows"]
    print(f"\nColluding server (studies/colluding_server.py), commit {got['commit'][:7]}")
    print(f"  {' '.join(got['argv'][1:])}")
    accuracy = {r["seed"]: round(r["main_task_accuracy"], 3) for r in rows}
    print("  test accuracy per seed:", dict(sorted(accuracy.items())))
    sizes = sorted({(r["against"], r["members"], r["non_members"]) for r in rows})
    print("  (pool, members, non-members):", sizes)
    print("\n| pool | attack | view | seeds | AUC | TPR@1%FPR | TPR@0.1%FPR |")
    print("|---|---|---|---|---|---|---|")
    for against, pool in (("held_out", "within"), ("strict", "strict"), ("others", "others")):
        for attack in SERVER:
            for view in ("open", "secure"):
                want = (against, attack, view)
                rs = [r for r in rows if (r["against"], r["attack"], r["view"]) == want]
                if not rs:
                    continue
                keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr")
                cells = [cell([r[k] for r in rs]) for k in keys]
                print(f"| {pool} | {attack} | {view} | {len(rs)} | " + " | ".join(cells) + " |")


def main(argv):
    del argv
    print(intervals.NOTE)
    if _LIRA.value:
        participant(_LIRA.value)
    if _COLLUDING.value:
        server(_COLLUDING.value)


if __name__ == "__main__":
    app.run(main)
