"""Which layer and pass of the network each operation of a compiled XLA module comes from
(for `studies/step_profile.py`, kept apart from its absl flags so that tests can
import it).

The HLO's ``op_name`` metadata carries JAX's name stack: ``.../jvp(MnistCNN)/Conv_1/...``
is the forward pass of layer ``Conv_1``, ``.../transpose(jvp(MnistCNN))/Conv_1/...`` its
backward pass.
"""

from __future__ import annotations

import collections
import re

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) (\S+?)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def source(op_name: str) -> str:
    """An HLO op_name -> the network's layer and pass, or the round's own operation:
    '.../closed_call/transpose(jvp(MnistCNN))/Conv_1/dot_general' ->
    'backward Conv_1/dot_general' (a jit(f) level -> f); '.../while/body/sort' -> 'sort'."""
    match = re.search(r"(transpose\()?jvp\(", op_name)
    if not match:
        return op_name.split("/")[-1]
    direction = "backward " if match.group(1) else "forward "
    parts = [
        p for p in op_name[match.start() :].split("/") if not re.match(r"(transpose\()?jvp\(", p)
    ]
    return direction + "/".join(re.sub(r"^jit\((.*)\)$", r"\1", p) for p in parts)


UNATTRIBUTED = "no op_name"
# Control flow holds other operations (its time is theirs); the rest move no data.
_NOT_WORK = {"while", "call", "conditional", "parameter", "constant", "tuple"}
_NOT_WORK |= {"get-tuple-element", "bitcast"}


def layer(src: str) -> str:
    """'backward Conv_1/dot_general' -> 'backward Conv_1'; anything outside the network's
    layers (the loss, SGD, the round's own work) -> 'outside the layers'; an operation
    XLA made without an op_name -> 'no op_name'."""
    if src.startswith(UNATTRIBUTED):
        return UNATTRIBUTED
    return src.split("/")[0] if "/" in src and " " in src else "outside the layers"


def instructions(hlo: str) -> dict[str, tuple[str, bool]]:
    """Each instruction of the compiled module -> (its `source`, whether it is a matrix
    product: a dot, or a fusion around one). A fusion XLA made without an op_name (bf16
    normalisation makes many) takes the commonest op_name among its instructions that
    names a layer (or else the commonest of all); an operation with none is kept as
    'no op_name <opcode>', not dropped. Control flow, whose time is its body's, is left
    out."""
    with_dot, inner = set(), collections.defaultdict(collections.Counter)
    computation = None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?(\S+) .*\{$", line)
        if header:
            computation = header.group(1)
            continue
        if " dot(" in line:
            with_dot.add(computation)
        if op := _OP_NAME.search(line):
            inner[computation][op.group(1)] += 1
    inner_op = {c: _layered(ops) for c, ops in inner.items()}
    found = {}
    for line in hlo.splitlines():
        match, op = _INSTRUCTION.match(line), _OP_NAME.search(line)
        if not match or (not op and match.group(3) in _NOT_WORK):
            continue
        calls = re.search(r"calls=%([\w.\-]+)", line)
        called = calls.group(1) if calls else None
        is_dot = match.group(3) == "dot" or called in with_dot
        op_name = op.group(1) if op else inner_op.get(called)
        src = source(op_name) if op_name else f"{UNATTRIBUTED} {match.group(3)}"
        found[match.group(1)] = (src, is_dot)
    return found


def _layered(op_names: collections.Counter) -> str:
    """The commonest of `op_names` that names one of the network's layers, else the
    commonest of all."""
    in_layers = [n for n, _ in op_names.most_common() if layer(source(n)) != "outside the layers"]
    return in_layers[0] if in_layers else op_names.most_common(1)[0][0]
