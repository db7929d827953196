"""What every launcher shares: clean one-line errors, a closing summary."""

import sys
import traceback

from absl import flags, logging

from experiments import render
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
    """Prints the short form of one run's results.json (`render.run_summary`)."""
    print(f"{render.run_summary(result)}\noutputs in {workdir}")
