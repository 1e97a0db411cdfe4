"""The project's packages import cleanly: no import cycle between modules, no private name taken across packages,
and every module imports alone (with no other project module loaded before it).

The graph is read from the source (top-level ``import`` statements; imports inside functions are deliberate lazy
ones and ``if TYPE_CHECKING:`` blocks never run). Importing alone runs in one fresh interpreter that drops every
project module from ``sys.modules`` before each import, so third-party packages load once and the check stays fast.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "training", "app_lib")
# These import an engine (verl, TRL) that lives in its own environment; tests/training/engines checks them there.
ENGINE_ONLY = {"training.engines.verl_real", "training.engines.verl_trainer", "training.engines.verl_reward",
               "training.engines.trl_trainer", "training.engines.trl_config"}  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not (
            isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        ):
            found += [n for n in node.body + node.orelse if isinstance(n, ast.Import | ast.ImportFrom)]
        elif isinstance(node, ast.Try):
            found += [n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """``(edges, private)``: module -> project modules it imports at top level; ``a imports _b from c`` across
    packages."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                    base = ".".join([*pkg, base] if base else pkg)
                targets = [
                    (f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base, a.name) for a in node.names
                ]
            for target, imported in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
                    if imported and imported.startswith("_") and target.split(".")[0] != name.split(".")[0]:
                        private.append(f"{name} imports {imported} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_and_no_private_name_across_packages() -> None:
    edges, private = import_graph()
    assert sum(len(v) for v in edges.values()) > 100, (
        "the graph reader found too few imports to mean anything"
    )
    assert not cycles(edges), f"import cycles: {cycles(edges)}"
    assert not private, "private names imported across packages:\n" + "\n".join(private)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_imports_alone() -> None:
    names = [m for m in modules() if m not in ENGINE_ONLY]
    code = f"""
import importlib, sys, traceback
failed = []
for name in {names!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in {PACKAGES!r}]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3).splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})  # fmt: skip
    assert proc.returncode == 0, f"modules that fail to import alone:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert len(names) > 60
