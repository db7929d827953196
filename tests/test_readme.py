"""The README's library examples run as printed, in order, each within 15 lines."""

import contextlib
import io
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _examples() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    start = text.index("## Use it as a library")
    section = text[start : text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_three_examples_of_at_most_15_lines():
    examples = _examples()
    assert len(examples) == 3
    for code in examples:
        assert len([line for line in code.splitlines() if line.strip()]) <= 15, code


def test_library_examples_run_as_printed():
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for i, code in enumerate(_examples()):
            exec(compile(code, f"README.md example {i + 1}", "exec"), namespace)
    ns = namespace
    # Example 1: 30 honest rounds and one malicious round, on the user's own arrays.
    assert int(ns["server"].round) == 31
    owners = ns["part"].owner
    assert sorted(np.unique(owners)) == [0, 1, 2, 3, 4] and owners.shape == (1500,)
    accuracy = float(
        np.mean(np.argmax(ns["apply_fn"](ns["server"].params, ns["x"]), -1) == ns["y"])
    )
    assert accuracy > 0.8, accuracy  # the MLP learnt the digits through FedAvg
    # Example 2: the label rule flags the victim's records and few others'.
    is_in = np.asarray(ns["is_in"])
    assert is_in[owners == 1].mean() > 0.5 > is_in[owners != 1].mean()
    # Example 3: one line per score, with the metrics' names.
    lines = printed.getvalue().strip().splitlines()
    assert lines[0].startswith("IN: ")
    assert [line.split(":")[0] for line in lines[1:]] == ["loss_threshold", "loss_calibrated"]
    assert all("AUC 0." in line or "AUC 1." in line for line in lines[1:])
