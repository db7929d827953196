"""The package's layout: subpackages on floors that import only downward, and a public API
whose every name is documented (and, for functions, typed) where it is defined."""

import ast
import inspect
import os

import pytest

import fedgan_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fedgan_jax")
FLOORS = ["core", "data", "nn", "evaluation", "federation", "adversary", "driver"]


def _modules():
    for sub in FLOORS:
        for name in sorted(os.listdir(os.path.join(PACKAGE, sub))):
            if name.endswith(".py"):
                yield sub, os.path.join(PACKAGE, sub, name)


def _imported_floors(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        floors = {
            parts[1]
            for parts in (name.split(".") for name in names)
            if parts[0] == "fedgan_jax" and len(parts) > 1 and parts[1] in FLOORS
        }
        for floor in floors:
            yield node.lineno, floor


def test_every_module_sits_on_a_floor():
    loose = [n for n in os.listdir(PACKAGE) if n.endswith(".py") and n != "__init__.py"]
    assert not loose, f"modules outside the subpackages: {loose}"


@pytest.mark.parametrize("sub, path", list(_modules()), ids=lambda v: os.path.basename(str(v)))
def test_imports_run_only_downward(sub, path):
    upward = [
        (line, floor)
        for line, floor in _imported_floors(path)
        if FLOORS.index(floor) > FLOORS.index(sub)
    ]
    assert not upward, f"{os.path.relpath(path, ROOT)} imports a higher floor: {upward}"


def test_the_floor_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from fedgan_jax.driver import engine\nfrom fedgan_jax.core import checks\n")
    assert sorted(floor for _, floor in _imported_floors(bad)) == ["core", "driver"]


@pytest.mark.parametrize("name", sorted(set(fedgan_jax.__all__) - {"run_sweep"}))
def test_public_names_are_documented_and_typed(name):
    obj = getattr(fedgan_jax, name)
    assert inspect.getdoc(obj), f"fedgan_jax.{name} has no docstring"
    if inspect.isfunction(obj):
        signature = inspect.signature(obj)
        assert signature.return_annotation is not inspect.Signature.empty, name
        untyped = [
            p.name
            for p in signature.parameters.values()
            if p.annotation is inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL
        ]
        assert not untyped, f"fedgan_jax.{name}: untyped {untyped}"
