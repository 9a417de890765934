"""The public Python API (``import bench``) and the README's example of it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench

from helpers import ROOT


def test_every_public_name_resolves() -> None:
    for name in bench.__all__:
        assert getattr(bench, name) is not None, name
    with pytest.raises(AttributeError):
        bench.no_such_name  # noqa: B018


def test_importing_the_package_imports_no_library() -> None:
    heavy = "('torch', 'optuna', 'mlflow', 'pandas')"
    code = f"import sys, bench; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_readmes_python_example_runs(tmp_path: Path) -> None:
    """The README's example, run as written in a folder of its own (the smoke study, a trial)."""
    readme = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "smoke.yaml").write_text((ROOT / "studies" / "smoke.yaml").read_text())
    out = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "StepLR" in out.stdout  # the registry printed
    assert (tmp_path / "results" / "optuna.journal").is_file() and (
        tmp_path / "results" / "mlflow.db"
    ).is_file()
