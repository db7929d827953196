"""What every launcher shares: clean one-line errors, a closing summary."""

import sys
import traceback

from absl import flags, logging

from fedgan_jax.errors import FedGanError

_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks of configuration/data errors.")


def guarded(fn):
    """Runs fn(); a FedGanError becomes one line on stderr and exit status 2.

    Library INFO logs (orbax, absl) are silenced unless --verbose: progress comes
    from the launcher itself.
    """
    if not _VERBOSE.value:
        logging.set_verbosity(logging.WARNING)
    try:
        return fn()
    except FedGanError as e:
        if _VERBOSE.value:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def summarize(result: dict, workdir: str) -> None:
    """Prints the headline numbers of one run's results.json."""
    lines = [
        f"final main-task accuracy: {result['final_main_task_accuracy']:.4f}",
        f"generator started at round: {result['gan_start_round']}",
    ]
    for key in ("global_model_accuracy", "attack_model_accuracy", "oracle_model_accuracy"):
        if result.get(key) is not None:
            lines.append(f"{key}: {result[key]:.4f}")
    for attack, per_protocol in result["attacks"].items():
        if per_protocol is None:
            lines.append(f"{attack:>15s}: not run (the generator never started)")
            continue
        for protocol, m in per_protocol.items():
            lines.append(
                f"{attack:>15s} / {protocol:<6s} TPR {m['tpr']:.3f}  FPR {m['fpr']:.3f}  "
                f"AUC {m['auc']:.3f}  TPR@1%FPR {m['tpr_at_1pct_fpr']:.3f}  "
                f"TP {m['tp']} FN {m['fn']} FP {m['fp']} TN {m['tn']}"
            )
    lines.append(f"wall time: {result['wall_seconds']:.1f} s; outputs in {workdir}")
    print("\n".join(lines))
