"""What every launcher shares: one line per mistake, exit statuses, a closing summary.

    launch.run(main, configs=("config",))   # instead of absl's app.run(main)

Every everyday mistake is one line on stderr, ``error: ...``, and an exit status:

* 2: what the command asks cannot run: an unknown or misspelt flag or config field (with
  the field it probably meant), a flag value of the wrong type, a config file that does
  not load, a bad config, data or workdir (`FedGanError` and its ``exit_status``);
* 1: the workdir stopped taking writes mid-run (`StorageError`, any other `OSError`);
* 130: Ctrl-C, with the round a rerun of the same command resumes from.

``--help`` prints the launcher's docstring, its flags and every config section with its
fields (all of them, with a comment each, are in ``configs/default.py``), and exits 0.
``--verbose`` shows the traceback behind an error.
"""

import re
import sys
import textwrap
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import render
from fedgan_jax.core.errors import FedGanError

_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks of configuration/data errors.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Several processes: host:port of process 0 (all give it)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Several processes: how many.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Several processes: this one's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Several processes, their addresses read from the cluster's environment (SLURM, MPI).",
)
_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")
DEFAULT_CONFIG = "configs/default.py"


def run(main, *, configs: tuple[str, ...] = ()) -> None:
    """`app.run(main)` with the flags parsed by `parse_flags` (`configs`: config flags)."""
    app.run(main, flags_parser=lambda argv: parse_flags(argv, configs))


def parse_flags(argv: list[str], configs: tuple[str, ...] = ()) -> list[str]:
    """absl's parse, with `--help` and every parse error as above; loads the configs."""
    if any(arg.split("=")[0] in _HELP for arg in argv[1:]):
        print(help_text(configs))
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        if "whilst parsing config file" in str(e):  # the file's get_config raised
            usage_error(_config_file_error(e, argv, configs))
        message = re.sub(r"^flag ", "", str(e))
        required = re.search(r"Flag (--\w+) must have a value other than None", message)
        usage_error(f"{required.group(1)} is required (see --help)" if required else message)
    except (AttributeError, KeyError) as e:  # an override naming no config field
        usage_error(_unknown_field(e, argv))
    for name in configs:
        try:
            flags.FLAGS[name].value.keys()  # a file that failed to load raises here
        except Exception as e:  # noqa: BLE001 (any failure of the user's config file)
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            path = config_flags.get_config_filename(flags.FLAGS[name])
            usage_error(f"--{name}={path}: {lines[-1] if lines else type(e).__name__}")
    if len(rest) > 1:
        usage_error(f"unexpected arguments: {' '.join(rest[1:])}")
    return rest


def _config_file_error(e: Exception, argv: list[str], configs: tuple[str, ...]) -> str:
    """One line naming the config flag whose file failed, e.g. an argument it takes none of
    (``--config=configs/demo.py:fast`` calls ``get_config('fast')``)."""
    given = [a for a in argv[1:] if a.lstrip("-").split("=")[0] in configs and "=" in a]
    flag = given[-1] if given else f"--{configs[0]}" if configs else "a config flag"
    text = str(e).strip().splitlines()
    why = text[-1] if text else type(e).__name__
    arg = re.search(r"get_config\(\) takes (\d+) positional arguments? but (\d+)", why)
    if arg and ":" in flag.split("=", 1)[-1]:
        path, extra = flag.split("=", 1)[1].split(":", 1)
        takes = "no argument" if arg.group(1) == "0" else f"{arg.group(1)} argument(s)"
        return f"{flag}: {path}'s get_config() takes {takes}; drop ':{extra}'"
    return f"{flag}: the config file failed: {why}"


def usage_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _unknown_field(e: Exception, argv: list[str]) -> str:
    text = str(e).replace("\\'", "'").replace('\\"', '"').replace("\\n", "\n")
    guess = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    key = guess.group(2) if guess else next(iter(re.findall(r"'([^'\s]+)'", text)), "?")
    for arg in argv[1:]:
        path = arg.lstrip("-").split("=")[0].split(".")
        if len(path) > 1 and key in path[1:]:
            field = path[1 : path.index(key, 1) + 1]
            hint = f"; did you mean {'.'.join(field[:-1] + [guess.group(1)])}?" if guess else ""
            return (
                f"{arg}: no config field {'.'.join(field)}{hint} "
                f"(every field is in {DEFAULT_CONFIG})"
            )
    return f"no config field {key!r} (every field is in {DEFAULT_CONFIG})"


def help_text(configs: tuple[str, ...]) -> str:
    """The launcher's docstring, its flags, and the config sections with their fields."""
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    own = flags.FLAGS.module_help(__name__).split("\n", 1)[-1]  # --verbose, unnamed
    parts = [doc, f"flags:\n{flags.FLAGS.main_module_help()}\n{own}"]
    if configs:
        from configs import default  # the launchers put the repository on sys.path

        lines = [
            f"config sections: override any field with --{configs[0]}.SECTION.FIELD=VALUE;",
            f"every field, with a comment, is in {DEFAULT_CONFIG}.",
        ]
        for section, fields in default.get_config().items():
            names = ", ".join(fields.keys()) if hasattr(fields, "keys") else "(one value)"
            lines.append(textwrap.fill(f"  {section}: {names}", 100, subsequent_indent="      "))
        parts.append("\n".join(lines))
    return "\n\n".join(part for part in parts if part.strip())


def guarded(fn):
    """Runs fn(); its deliberate errors, Ctrl-C and refused writes become one line each.

    Library INFO logs (absl) and orbax's own logs are silenced unless --verbose: progress
    comes from the launcher itself.
    """
    if not _VERBOSE.value:
        logging.set_verbosity(logging.WARNING)
        # orbax logs a failed save from its threads; the error line says it once
        logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
    try:
        _join()
        return fn()
    except FedGanError as e:
        _fail(str(e), e.exit_status)
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume from the last checkpoint", 130)
    except OSError as e:  # a file refused outside the rounds (e.g. a sweep's summary)
        _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e), 1)


def _join() -> None:
    """Joins the other processes of a multi-process launch (fedgan_jax.driver.distributed)."""
    flags_given = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _DISTRIBUTED.value or any(v is not None for v in flags_given):
        from fedgan_jax.driver import distributed

        distributed.initialize(*flags_given)


def _fail(message: str, status: int) -> None:
    if _VERBOSE.value:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def summarize(result: dict, workdir: str) -> None:
    """Prints the short form of one run's results.json (`render.run_summary`); nothing in
    a process other than the writer (process 0) of a multi-process launch."""
    if not result:
        return
    print(f"{render.run_summary(result)}\noutputs in {workdir}")
