"""The import rules of DESIGN.md: analysis and sweeps load neither torch nor ray (nor transformers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["sweeps", "analysis"])
def test_package_loads_without_torch_or_ray(package: str) -> None:
    modules = sorted(
        p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".") for p in (ROOT / package).rglob("*.py")
    )
    code = "\n".join(f"import {m}" for m in modules) + (
        "\nimport sys\nheavy = [m for m in ('torch', 'ray', 'transformers') if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("models", {"ray", "orchestrator", "analysis"}),
        ("sweeps", {"torch", "ray", "transformers", "models", "orchestrator", "analysis"}),
        ("analysis", {"torch", "ray", "transformers", "models", "orchestrator"}),
    ],
)
def test_imports_flow_one_way(package: str, forbidden: set[str]) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & forbidden) for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


PACKAGES = ("sweeps", "models", "orchestrator", "analysis")


def _module_name(path: Path) -> str:
    name = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return name.removesuffix(".__init__")


def _project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it, function bodies included (a lazy import is still a
    dependency): for ``from a.b import c``, module a.b, and a.b.c when c is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def test_no_import_cycles_inside_or_across_packages() -> None:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {name: _project_imports(path, set(files)) - {name} for name, path in files.items()}
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


# Signatures a third party fixes: ray.tune.ProgressReporter's methods, which Tune calls with `done` positionally.
EXTERNAL_SIGNATURES = {("orchestrator/progress.py", "should_report"), ("orchestrator/progress.py", "report")}


def test_no_function_takes_a_bare_boolean_positionally() -> None:
    """A bool parameter must be keyword-only: ``f(x, True)`` says nothing at the call site; ``f(x, strict=True)``
    does."""
    offenders = []
    for package in (*PACKAGES, "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                external = (path.relative_to(ROOT).as_posix(), getattr(node, "name", "")) in EXTERNAL_SIGNATURES
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not external:
                    positional = node.args.posonlyargs + node.args.args
                    offenders += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({a.arg})"
                        for a in positional
                        if a.annotation is not None and ast.unparse(a.annotation) in ("bool", "bool | None")
                    ]
    assert offenders == []
