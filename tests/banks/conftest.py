"""Fixtures for the bank tests: the shared datasets (when present) and small files written per test."""

from pathlib import Path

import pytest

# CI runs a clone whose sibling is shared/, as on the workstations: <repo>/../shared/datasets.
DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
MMLU_DIR = DATASETS / "mmlu"
QUALITY_DIR = DATASETS / "quality"
QUALITY_SAMPLE = QUALITY_DIR / "QuALITY.v1.0.1.htmlstripped.sample"
QUALITY_BREAKAWAY = QUALITY_DIR / "QuALITY.v1.0.1.breakaway.html.jsonl"


@pytest.fixture
def mmlu_dir():
    if not (MMLU_DIR / "test").is_dir():
        pytest.skip(f"the shared MMLU files are not at {MMLU_DIR.resolve()} (a sibling shared/ checkout)")
    return MMLU_DIR


@pytest.fixture
def quality_files():
    if not (QUALITY_SAMPLE.is_file() and QUALITY_BREAKAWAY.is_file()):
        pytest.skip(f"the shared QuALITY sample files are not in {QUALITY_DIR.resolve()}")
    return QUALITY_SAMPLE, QUALITY_BREAKAWAY


@pytest.fixture
def write(tmp_path):
    """write("dir/name.csv", text or bytes) -> the path, under tmp_path. Text is written byte for byte
    (no newline translation), so tests control CRLF and bare CR exactly."""

    def write(relpath: str, content: str | bytes) -> Path:
        path = tmp_path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write
