"""A method's default hyper-parameter is written once, in its spec (its module in ``workbench/methods/``); everything else reads
it from there. This test fails if a default appears as a literal elsewhere: a function parameter named like a
hyper-parameter whose default is that literal (``tau: float = 0.5``), a keyword argument (``tau=0.5``), or a
widget call naming the hyper-parameter with the literal among its arguments (``st.slider("tau", 0.05, 2.0, 0.5)``).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from workbench.methods import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["workbench", "training", "app_pages", "app_lib", "app.py"]
SPEC_DIR = ROOT / "workbench" / "methods"  # each method module holds its own defaults


def _defaults() -> dict[str, set]:
    out: dict[str, set] = {}
    for hp in DEFAULTS.values():
        for f in dataclasses.fields(hp):
            value = getattr(hp, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value not in (0, 1):
                out.setdefault(f.name, set()).add(value)
    return out


def _files() -> list[Path]:
    files = []
    for name in SOURCES:
        p = ROOT / name
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return [f for f in files if SPEC_DIR not in f.parents]


def _number(node: ast.AST) -> float | None:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    return None


def literal_defaults(tree: ast.AST, defaults: dict[str, set]) -> list[tuple[int, str]]:
    """(line, what) of every hyper-parameter default written as a literal in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults) :], node.args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d]
            for arg, default in pairs:
                if arg.arg in defaults and _number(default) in defaults[arg.arg]:
                    found.append((node.lineno, f"parameter {arg.arg} = {_number(default)!r}"))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            if node.target.id in defaults and _number(node.value) in defaults[node.target.id]:
                found.append((node.lineno, f"field {node.target.id} = {_number(node.value)!r}"))
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in defaults and _number(kw.value) in defaults[kw.arg]:
                    found.append((node.lineno, f"keyword {kw.arg}={_number(kw.value)!r}"))
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for name in names:
                if name in defaults and any(_number(a) in defaults[name] for a in node.args):
                    found.append((node.lineno, f"widget {name!r} with its default as a literal"))
    return found


def test_the_scan_finds_each_kind_of_literal():
    defaults = {"tau": {0.5}}
    code = "def f(x, tau: float = 0.5): pass\nf(1, tau=0.5)\nst.slider('tau', 0.05, 2.0, 0.5)\n"
    code += "class P:\n    tau: float = 0.5\n"
    assert [w.split()[0] for _, w in literal_defaults(ast.parse(code), defaults)] == [
        "parameter", "keyword", "widget", "field"]  # fmt: skip
    assert literal_defaults(ast.parse("def f(tau=DEFAULTS['real'].tau): pass"), defaults) == []


def test_no_method_default_is_written_outside_its_spec():
    defaults = _defaults()
    assert defaults["tau"] == {0.5}  # the scan looks for what the specs hold
    bad = []
    for path in _files():
        for line, what in literal_defaults(ast.parse(path.read_text(), str(path)), defaults):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not bad, "defaults written outside workbench/methods/:\n" + "\n".join(bad)
