"""The lock files `make` and the image install from (requirements/*.lock, made by `make lock`): fully pinned,
within pyproject.toml's ranges, and the two locks agree wherever they overlap."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCKS = {name: REPO / "requirements" / f"{name}.lock" for name in ("base", "dev")}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker), ...]: a universal lock may pin one package per Python or platform."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in lock.read_text().splitlines():
        if not line or line[0] in "# ":
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # exactly one `==` pin per line: nothing is left to resolve
        assert specifier.operator == "==", line
        found.setdefault(canonical(requirement.name), []).append((specifier.version, str(requirement.marker or "")))
    return found


def declared(extra: str | None) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(("lock", "extra"), [("base", None), ("dev", "dev")])
def test_the_lock_pins_every_declared_dependency_within_its_range(lock, extra):
    locked = pins(LOCKS[lock])
    for requirement in declared(extra):
        versions = locked.get(canonical(requirement.name))
        assert versions, f"{requirement.name} is not in {lock}.lock: run `make lock`"
        for version, marker in versions:
            if marker and not Marker(marker).evaluate({"python_full_version": "3.11.0", "python_version": "3.11"}):
                continue  # a pin for a newer Python; the range is checked on the oldest supported one
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock}.lock pins {requirement.name}=={version}, outside {requirement}: run `make lock`"
            )


def test_the_dev_lock_agrees_with_the_base_lock():
    base, dev = pins(LOCKS["base"]), pins(LOCKS["dev"])
    assert set(base) < set(dev)
    assert {name: base[name] for name in base} == {name: dev[name] for name in base}


def test_make_installs_from_the_locks_then_the_project_without_dependencies():
    makefile = (REPO / "Makefile").read_text()
    assert "BASE_LOCK := requirements/base.lock" in makefile and "DEV_LOCK := requirements/dev.lock" in makefile
    assert re.search(r"^\$\(VENV\)/\.installed: \$\(BASE_LOCK\)", makefile, flags=re.MULTILINE)
    assert re.search(r"^\$\(VENV\)/\.installed-dev: \$\(DEV_LOCK\)", makefile, flags=re.MULTILINE)
    assert "pip install --python $(PY) --no-deps -e ." in makefile  # uv
    assert "pip install --disable-pip-version-check --no-compile --no-deps -e ." in makefile  # pip
