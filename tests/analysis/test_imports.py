"""The analysis layer must run where only the results are: importing it loads no torch, transformers or ray."""

from __future__ import annotations

import subprocess
import sys


def test_analysis_imports_no_torch_transformers_or_ray() -> None:
    code = (
        "import sys, analysis, analysis.cli, analysis.report, analysis.plots, sweeps.tables\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
