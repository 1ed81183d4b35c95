"""The deployment docs: the sections an operator looks for, a sizing table left to the load benchmark (no
invented numbers), and the metrics token documented where every setting is."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY_README = (REPO / "deploy" / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DEPLOY_README, flags=re.MULTILINE | re.DOTALL)
    assert match, f"deploy/README.md has no section '{title}'"
    return match[1]


def test_the_deploy_readme_is_no_longer_a_placeholder():
    assert "Placeholder" not in DEPLOY_README
    for title in (
        "One GPU box (Docker Compose)",
        "A cluster (Kubernetes)",
        "Backups",
        "Upgrades",
        "Scaling and sizing",
        "Observability",
    ):
        assert section(title).strip()


def test_the_sizing_table_holds_only_numbers_the_load_benchmark_recorded():
    sizing = section("Scaling and sizing")
    rows = [line for line in sizing.splitlines() if line.startswith("| ") and not line.startswith("| ---")][1:]
    assert len(rows) >= 5
    bench = (REPO / "bench" / "README.md").read_text()
    assert "## Load" in bench, "the sizing numbers must come from bench/README.md's Load section"
    for row in rows:
        measured = row.split("|")[2].strip()
        assert measured, f"an empty row: {row}"
    assert "bench/load.py" in sizing, "say which benchmark produced the numbers"


def test_backups_and_upgrades_say_how():
    assert "pg_dump" in section("Backups") and "pg_restore" in section("Backups")
    upgrades = section("Upgrades")
    assert upgrades.index("migrate") < upgrades.index("web1")  # migrations before the web processes roll


def test_every_metric_the_view_emits_is_documented():
    source = (REPO / "oversight" / "ops" / "metrics.py").read_text()
    observability = section("Observability")
    for name in sorted(set(re.findall(r'"(oversight_[a-z_]+)"', source))):
        base = re.sub(r"_(bucket|count|sum|max)$", "", name)
        assert name in observability or base in observability, f"{name} is not in deploy/README.md"


def test_the_metrics_token_is_documented_with_the_other_settings():
    for doc in ("README.md", "deploy/.env.example", "deploy/README.md"):
        assert re.search(r"\bMETRICS_TOKEN\b", (REPO / doc).read_text()), doc
