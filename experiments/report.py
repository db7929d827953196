"""Markdown tables of one finished run (results.json), as the README quotes them.

    python experiments/report.py --workdir=runs/demo

Prints the accuracies (main task, global model, attack classifier, oracle) and every
attack x protocol with TP/FN/FP/TN, the paper's accuracy (TPR), FPR, precision, balanced
accuracy, AUC and TPR at 1% / 0.1% FPR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (holds results.json).")
flags.mark_flags_as_required(["workdir"])


def _num(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def tables(r: dict) -> str:
    d = r.get("d_gen") or {}
    lines = [
        f"victim holds k={r['victim_num_labels']} labels {r['victim_labels']}; "
        f"generator started at round {r['gan_start_round']}; "
        f"wall time {r['wall_seconds']:.0f} s",
        "",
        "| final main-task acc. | global model acc. | attack classifier acc. (gan) | "
        "oracle acc. | D_gen kept / generated | D_gen diversity (real) |",
        "|---|---|---|---|---|---|",
        f"| {_num(r['final_main_task_accuracy'], 4)} | {_num(r['global_model_accuracy'], 4)} | "
        f"{_num(r['attack_model_accuracy'], 4)} | {_num(r['oracle_model_accuracy'], 4)} | "
        f"{d.get('kept', 'n/a')} / {d.get('generated', 'n/a')} | "
        f"{_num(d.get('diversity'), 2)} ({_num(d.get('real_diversity'), 2)}) |",
        "",
        "| attack | protocol | TP | FN | FP | TN | TPR (paper's acc.) | FPR | precision | "
        "bal. acc. | AUC | TPR@1%FPR | TPR@0.1%FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attack, per_protocol in r["attacks"].items():
        if per_protocol is None:
            lines.append(f"| {attack} | (generator never started) |" + " |" * 11)
            continue
        for protocol, m in per_protocol.items():
            lines.append(
                f"| {attack} | {protocol} | {m['tp']} | {m['fn']} | {m['fp']} | {m['tn']} | "
                f"{_num(m['tpr'])} | {_num(m['fpr'])} | {_num(m['precision'])} | "
                f"{_num(m['balanced_accuracy'])} | {_num(m['auc'])} | "
                f"{_num(m['tpr_at_1pct_fpr'])} | {_num(m['tpr_at_0.1pct_fpr'])} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    from fedgan_jax import io

    print(tables(io.read_json(os.path.join(_WORKDIR.value, "results.json"))))


if __name__ == "__main__":
    app.run(main)
