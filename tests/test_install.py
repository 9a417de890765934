"""What `make install` installs: torch from TORCH_SPEC, everything else at constraints.txt's pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_within_its_range_and_leave_torch_out() -> None:
    """A dependency added to pyproject.toml without `make lock` would be installed at whatever version is
    newest that day; a pin outside pyproject's range would make the install fail."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins = _pins()
    assert "torch" not in pins, "torch is TORCH_SPEC's to choose (a CPU or a CUDA build)"
    assert len(pins) > len(requirements)  # their own dependencies are pinned too
    for req in requirements:
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is not pinned in constraints.txt: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}"
        )
