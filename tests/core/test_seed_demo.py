"""The demo study `make run` seeds: what a new user meets first."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from oversight.core.models import Study

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def demo() -> Study:
    call_command("seed_demo", stdout=io.StringIO())
    return Study.objects.get(slug="demo")


def test_the_demo_gives_each_condition_its_own_story(demo):
    assisted, unaided = (
        set(demo.conditions.get(name=name).condition_items.values_list("item__passage__title", flat=True)) - {None}
        for name in ("Assisted", "Unaided")
    )
    assert len(assisted) == len(unaided) == 1
    assert assisted | unaided == {"The Fifth Share", "The Keeper's Arithmetic"}


def test_seeding_twice_changes_nothing(demo):
    before = demo.manifest_hash
    call_command("seed_demo", stdout=io.StringIO())
    assert Study.objects.get(slug="demo").manifest_hash == before
    assert sorted(Study.objects.values_list("slug", flat=True)) == ["demo", "demo-debate"]


def test_setup_migrates_collects_the_static_files_and_seeds_in_one_process(tmp_path):
    # What `make run` runs, on a fresh data directory, in a clean environment.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATA_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--setup", "--base-url", "http://127.0.0.1:8123"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Participant demo link:  http://127.0.0.1:8123/s/demo/" in result.stdout
    assert (tmp_path / "static" / "css" / "oversight.css").exists() and (tmp_path / "var" / "db.sqlite3").exists()
