"""`oversight.analysis` is pure functions over plain tables: it imports no Django and no other app of ours."""

import ast
from pathlib import Path

import oversight.analysis

PACKAGE = Path(oversight.analysis.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_analysis_imports_django_or_another_app():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5  # the package is where this test thinks it is
    offending = {
        f"{path.name}: {name}"
        for path in modules
        for name in imported_modules(path)
        if name.split(".")[0] == "django"
        or (name.split(".")[0] == "oversight" and not name.startswith("oversight.analysis"))
    }
    assert offending == set()
