"""The tables of docs/frontier.md from the JSON rows of studies/lira_shadows.py and
studies/colluding_server.py: mean ± the half-width of the 95% Student-t interval over
seeds (`fedgan_jax.evaluation.intervals`), one table per threat model.

    PYTHONPATH=. python studies/frontier_table.py \
        --lira=runs/frontier_lira_seed0.json,runs/frontier_lira_seed1.json,... \
        --colluding=runs/frontier_colluding.json
    PYTHONPATH=. python studies/frontier_table.py \
        --sweep=runs/memo/colluding_pc10_e3.json,runs/memo/colluding_pc10_e10.json,...

``--sweep`` takes several JSONs of studies/colluding_server.py, one federation each (its
``--per_class`` and ``--local_epochs`` read from the recorded argv), and prints one line
per federation: per attack, the strict protocol's TPR at 1% FPR and the AUC within the
victim's classes (members against the held-out records of its classes).
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
_SWEEP = flags.DEFINE_list("sweep", [], "JSONs of studies/colluding_server.py, one per federation.")

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


SWEEP = (
    ("label_rule", "open"),
    ("loss_calibrated", "open"),
    ("fedmia_loss", "open"),
    ("fedmia_cosine", "open"),
    ("fedmia_cosine", "secure"),
    ("source_inference", "open"),
)


def flag_value(argv, name: str, default: str) -> str:
    """The value of ``--name=value`` in a recorded command line (the flag's default if absent)."""
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def sweep(paths) -> None:
    cells = []
    for path in paths:
        with open(path) as f:
            got = json.load(f)
        per_class = int(flag_value(got["argv"], "per_class", "0"))
        epochs = int(flag_value(got["argv"], "local_epochs", "1"))
        cells.append((per_class, epochs, got))
    print("\nMemorisation sweep (studies/colluding_server.py), commits:",
          sorted({got["commit"][:7] for _, _, got in cells}))  # fmt: skip
    names = [f"{a} ({v})" if a.startswith("fedmia_cosine") else a for a, v in SWEEP]
    for field, against, title in (
        ("tpr_at_1pct_fpr", "strict", "strict protocol, TPR at 1% FPR"),
        ("auc", "held_out", "within the victim's classes, AUC"),
    ):
        print(f"\n{title}\n")
        print("| records per class | E | seeds | test acc. | " + " | ".join(names) + " |")
        print("|---" * (4 + len(names)) + "|")
        for per_class, epochs, got in sorted(cells, key=lambda c: c[:2]):
            rows = got["rows"]
            acc = {r["seed"]: r["main_task_accuracy"] for r in rows}
            line = [str(per_class), str(epochs), str(len(acc)), cell(list(acc.values()))]
            for attack, view in SWEEP:
                want = (against, attack, view)
                rs = [r for r in rows if (r["against"], r["attack"], r["view"]) == want]
                line.append(cell([r[field] for r in rs]) if rs else "-")
            print("| " + " | ".join(line) + " |")


def main(argv):
    del argv
    print(intervals.NOTE)
    if _LIRA.value:
        participant(_LIRA.value)
    if _COLLUDING.value:
        server(_COLLUDING.value)
    if _SWEEP.value:
        sweep(_SWEEP.value)


if __name__ == "__main__":
    app.run(main)
