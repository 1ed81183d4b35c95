"""oversight_dev stays beside the product: the wheel does not hold it (that nothing in oversight/ imports it is
tests/test_layers.py; the production image's side is tests/deploy/test_dockerfile.py)."""

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def find_packages(include: list[str]) -> list[str]:
    """setuptools' packages.find over the checkout: dotted names of the folders that are packages (an
    __init__.py all the way down from the top), matched with fnmatch against `include`."""
    found = []
    for top in REPO.iterdir():
        for init in sorted(top.rglob("__init__.py")) if (top / "__init__.py").exists() else ():
            parts = init.parent.relative_to(REPO).parts
            if all((REPO.joinpath(*parts[:n]) / "__init__.py").exists() for n in range(1, len(parts) + 1)):
                name = ".".join(parts)
                if any(fnmatchcase(name, pattern) for pattern in include):
                    found.append(name)
    return sorted(found)


def test_the_wheel_packages_only_the_product():
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not find.get("exclude")
    packages = find_packages(find["include"])
    assert "oversight" in packages and "oversight.core" in packages
    assert all(name == "oversight" or name.startswith("oversight.") for name in packages), packages
    # The tools exist as a package here, in the checkout: the include above is what leaves them out.
    assert "oversight_dev" in find_packages(["oversight*"])
