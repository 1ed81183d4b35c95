"""Acceptance on the real files in <repo>/../shared/datasets (skipped, with the reason, where absent)."""

import json
import tarfile
import zipfile
from collections import Counter

import pytest
from django.db.models import Count

from oversight.banks.importers import import_mmlu, import_quality
from oversight.banks.models import Item, Passage
from oversight.banks.sampling import sample_disjoint, sample_items

from .helpers import db_snapshot

pytestmark = pytest.mark.django_db

MMLU_COUNTS = {"test": 14_042, "val": 1_531, "dev": 285}


def assert_full_mmlu(result):
    assert result.split_counts == MMLU_COUNTS
    assert result.subject_count == 57
    assert Item.objects.count() == 15_858
    assert Item.objects.values("subject").distinct().count() == 57


def test_all_of_mmlu_imports_with_the_published_counts_and_reimports_unchanged(mmlu_dir):
    result = import_mmlu(path=mmlu_dir)

    assert_full_mmlu(result)
    assert (result.items_new, result.items_updated, result.items_unchanged) == (15_858, 0, 0)
    per_subject = dict(
        Item.objects.filter(split="test").values_list("subject").annotate(n=Count("id")).values_list("subject", "n")
    )
    assert (per_subject["professional_law"], per_subject["moral_scenarios"], per_subject["abstract_algebra"]) == (
        1_534,
        895,
        100,
    )
    assert Counter(Item.objects.filter(split="dev").values_list("subject", flat=True)) == {s: 5 for s in per_subject}
    answers = Counter(Item.objects.filter(split="test").values_list("gold_index", flat=True))
    assert answers == {0: 3_222, 1: 3_462, 2: 3_582, 3: 3_776}
    first = Item.objects.get(external_id="abstract_algebra_test.csv:0")
    assert first.text == "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
    assert (first.options, first.gold_letter) == (["0", "4", "2", "6"], "B")
    # The README's quirk counts: the CSV parsing kept every embedded newline and every \r inside quotes.
    fields = [(item.text, *item.options) for item in Item.objects.all()]
    assert sum(any("\n" in f for f in row) for row in fields) == 1_285
    assert sum("\r" in f for row in fields for f in row) == 4
    before = db_snapshot()

    again = import_mmlu(path=mmlu_dir)

    assert (again.items_new, again.items_updated, again.items_unchanged) == (0, 0, 15_858)
    assert db_snapshot() == before
    assert Item.objects.values("external_id").distinct().count() == 15_858


def test_mmlu_imports_from_a_data_tar_ignoring_auxiliary_train(mmlu_dir, tmp_path):
    path = tmp_path / "data.tar"
    with tarfile.open(path, "w") as archive:
        for split in MMLU_COUNTS:
            for csv_file in sorted((mmlu_dir / split).glob("*.csv")):
                archive.add(csv_file, arcname=f"data/{split}/{csv_file.name}")
        archive.add(mmlu_dir / "README.txt", arcname="data/README.txt")
        aux = tmp_path / "mc_test.csv"
        aux.write_text('"An auxiliary question",a,b,c,d,A\n')
        archive.add(aux, arcname="data/auxiliary_train/mc_test.csv")
        archive.add(aux, arcname="data/auxiliary_train/x.csv")

    assert_full_mmlu(import_mmlu(path=path))
    assert not Item.objects.filter(subject="mc").exists()


def test_mmlu_imports_from_a_zip_of_the_data_directory(mmlu_dir, tmp_path):
    path = tmp_path / "mmlu.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for split in MMLU_COUNTS:
            for csv_file in sorted((mmlu_dir / split).glob("*.csv")):
                archive.write(csv_file, arcname=f"data/{split}/{csv_file.name}")

    assert_full_mmlu(import_mmlu(path=path))


def test_mmlu_samples_are_reproducible_and_disjoint(mmlu_dir):
    result = import_mmlu(path=mmlu_dir, splits=["test"])

    practice, main = sample_disjoint(bank=result.bank, sizes=[10, 200], seed=7, splits=["test"])

    assert [i.external_id for i in sample_items(bank=result.bank, n=10, seed=7, splits=["test"])] == [
        i.external_id for i in practice
    ]
    assert not {i.pk for i in practice} & {i.pk for i in main}


def test_the_quality_sample_gives_16_passages_and_194_items(quality_files):
    sample, _ = quality_files

    result = import_quality(path=sample)

    assert (result.passages_new, result.items_new, result.split_counts) == (16, 194, {"unknown": 194})
    assert Counter(Item.objects.values_list("gold_index", flat=True)) == {0: 50, 1: 52, 2: 41, 3: 51}
    assert Passage.objects.get(external_id="LEVAL-01").items.count() == 13
    again = import_quality(path=sample)
    assert (again.passages_unchanged, again.items_unchanged, again.items_new, again.items_updated) == (16, 194, 0, 0)


def test_the_html_breakaway_record_gives_one_passage_with_html_stripped(quality_files):
    sample, breakaway = quality_files

    result = import_quality(path=breakaway)

    assert (result.passages_new, result.items_new) == (1, 10)
    passage = Passage.objects.get()
    assert (passage.external_id, passage.title, passage.author) == ("23592", "Breakaway", "Gimble, Stanley")
    assert "<p" not in passage.text and "<!DOCTYPE" not in passage.text
    assert passage.text.startswith("Transcriber's Note: This etext was produced from Astounding Science\n Fiction")
    assert Item.objects.filter(difficult=True).count() == 4
    assert Item.objects.filter(difficult=False).count() == 6
    # Our HTML conversion matches the sample's own htmlstripped text of the same article exactly.
    stripped_line = json.loads(sample.read_text(encoding="utf-8").splitlines()[0])
    assert passage.text == stripped_line["article"]
    again = import_quality(path=breakaway)
    assert (again.passages_unchanged, again.items_unchanged) == (1, 10)


def test_the_html_twin_adds_nothing_to_a_bank_holding_the_stripped_sample(quality_files):
    sample, breakaway = quality_files
    import_quality(path=sample)

    result = import_quality(path=breakaway)

    assert (result.items_new, result.items_updated, result.items_unchanged) == (0, 0, 10)
    assert (result.passages_new, result.passages_updated, result.passages_unchanged) == (0, 0, 1)


def test_the_quality_directory_imports_the_stripped_sample_and_skips_its_html_twin(quality_files):
    sample, breakaway = quality_files

    result = import_quality(path=sample.parent)

    assert (result.passages_new, result.items_new) == (16, 194)
    assert result.warnings == [f"skipped {breakaway}: the htmlstripped form of the same split is imported instead"]
