"""The probes are pure torch: importing every probe module loads neither ray nor the analysis stack."""

import subprocess
import sys

MODULES = ["adam", "curvature", "hessian", "lanczos", "rank"]


def test_probe_modules_do_not_import_ray() -> None:
    imports = "; ".join(f"import models.probes.{name}" for name in MODULES)
    check = "import sys; bad = [m for m in ('ray', 'pandas', 'pyarrow') if m in sys.modules]; print(bad)"
    result = subprocess.run(
        [sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
