"""The README's library example runs as printed (and stays within 25 lines)."""

import contextlib
import io
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_library_example_runs():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## The library") : text.index("## Dependencies")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 25
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().strip() == "(1, 1000)"
