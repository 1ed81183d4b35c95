"""The layers of docs/architecture.md, read from the imports themselves (every import, module-level or inside a
function, absolute or relative), so a change that breaks them fails here rather than in review."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "oversight"

# Modules that wire the apps together (URLs, ASGI routing, settings) sit above every app and may import any of them.
WIRING = {"oversight.settings", "oversight.urls", "oversight.asgi", "oversight.celery", "oversight.realtime.routing"}
# What each app may import of the others. Apps not listed here (assistant, baselines, reports, exports, ops, realtime)
# sit above core and may import core, banks and analysis; they are checked by the general rules below.
ONLY = {
    "banks": set(),
    "core": {"banks"},
    "analysis": set(),
}
NEVER = {
    "participant": {"console"},
    "console": {"participant"},
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    module: str  # dotted module imported
    names: tuple[str, ...]  # names taken from it (`from module import a, b`)
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, importer: str, is_package: bool = False) -> list[Import]:
    found = []
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(importer, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = tuple(alias.name for alias in node.names)
            if node.module is None:  # `from . import views`: each name is a module
                found += [Import(importer, f"{module}.{name}", (), node.lineno) for name in names]
            else:
                found.append(Import(importer, module, names, node.lineno))
    return found


def app_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "oversight" or len(parts) < 2 or not (PRODUCT / parts[1]).is_dir():
        return None
    return parts[1]


def breaks(imp: Import) -> list[str]:
    """What this one import breaks, as sentences."""
    where = f"{imp.importer}:{imp.line} imports {imp.module}"
    top = imp.module.split(".")[0]
    if top != "oversight" and top.startswith("oversight"):
        return [f"{where}: the product never imports the development tools"]
    source, target = app_of(imp.importer), app_of(imp.module)
    problems = []
    if source == "analysis" and top == "django":
        problems.append(f"{where}: the analysis is pure functions over plain tables (no Django, no ORM)")
    if imp.importer in WIRING or source is None or target is None or source == target:
        return problems
    if source in ONLY and target not in ONLY[source]:
        allowed = ", ".join(sorted(ONLY[source])) or "no other app"
        problems.append(f"{where}: {source} may import {allowed}")
    if target in NEVER.get(source, ()):
        problems.append(f"{where}: {source} and {target} never import each other")
    private = [name for name in imp.names if name.startswith("_")]
    if private:
        problems.append(f"{where}: private name(s) {', '.join(private)} used outside their app")
    return problems


def product_imports() -> list[Import]:
    found = []
    for path in sorted(PRODUCT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        found += imports_of(path.read_text(), module_name(path, REPO), is_package=path.name == "__init__.py")
    return found


def test_the_product_keeps_its_layers():
    imports = product_imports()
    assert len(imports) > 500  # the scan really read the product
    assert not [problem for imp in imports for problem in breaks(imp)]


@pytest.mark.parametrize(
    ("importer", "source", "broken"),
    [
        ("oversight.core.services.trials", "from oversight.assistant.models import ChatMessage", "core may import"),
        ("oversight.core.services.trials", "from ...assistant import live", "core may import"),
        ("oversight.banks.sampling", "from oversight.core.models import Study", "banks may import no other app"),
        ("oversight.analysis.metrics", "from django.db.models import Q", "no ORM"),
        ("oversight.analysis.metrics", "import oversight.banks.models", "analysis may import"),
        ("oversight.console.views", "from oversight.participant import views", "never import each other"),
        ("oversight.participant.views", "from ..console.access import results_hidden", "never import each other"),
        ("oversight.reports.load", "from oversight.assistant.backends import _helper", "private name"),
        ("oversight.exports.services", "def f():\n    from oversight_dev import bots", "development tools"),
    ],
)
def test_it_catches_an_import_that_breaks_a_layer(importer, source, broken):
    problems = [problem for imp in imports_of(source, importer) for problem in breaks(imp)]
    assert any(broken in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("oversight.core.services.trials", "from oversight.banks.models import Item"),
        ("oversight.core.services.trials", "from .monitor import monitor_changed"),
        ("oversight.reports.load", "from oversight.core.models import Trial"),
        ("oversight.console.views_report", "from oversight.analysis import plots"),
        ("oversight.realtime.routing", "from oversight.participant.consumers import ChatConsumer"),
        ("oversight.assistant.services", "from oversight.assistant.live import _key"),
    ],
)
def test_it_allows_what_the_layers_allow(importer, source):
    assert [problem for imp in imports_of(source, importer) for problem in breaks(imp)] == []
