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
