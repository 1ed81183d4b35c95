import io
import sys

import pytest
from django.core.management import call_command, execute_from_command_line
from django.db import connections

from oversight.banks.models import Bank, Item

from .helpers import row_counts

pytestmark = pytest.mark.django_db

MMLU_TEST = "Q1,a,b,c,d,A\nQ2,a,b,c,d,B\n"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_import_mmlu_prints_the_counts_per_split_and_what_changed(write):
    write("mmlu/test/anatomy_test.csv", MMLU_TEST)
    write("mmlu/dev/anatomy_dev.csv", "Q,a,b,c,d,C\n")
    out = io.StringIO()

    call_command("import_mmlu", str(write("mmlu/x.txt", "").parent), stdout=out)
    call_command("import_mmlu", str(write("mmlu/x.txt", "").parent), stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "Bank 'MMLU' (created, mmlu)",
        "Items per split: dev 1, test 2; 1 subjects",
        "Items: 3 in the import: 3 new, 0 updated, 0 unchanged",
    ]
    assert "Items: 3 in the import: 0 new, 0 updated, 3 unchanged" in lines


def test_import_mmlu_takes_splits_and_a_bank_name(write):
    path = write("mmlu/test/anatomy_test.csv", MMLU_TEST).parents[1]
    write("mmlu/dev/anatomy_dev.csv", "Q,a,b,c,d,C\n")

    call_command("import_mmlu", str(path), "--splits", "dev", "--bank", "Few-shot", stdout=io.StringIO())

    assert list(Item.objects.values_list("bank__name", "split")) == [("Few-shot", "dev")]


def test_a_bad_file_makes_the_command_exit_non_zero_with_the_message_on_stderr(write, capsys, monkeypatch):
    path = write("mmlu/test/anatomy_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,d,X\n")
    # run_from_argv closes every connection on its way out, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "import_mmlu", str(path.parent)])

    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"CommandError: {path}:2: answer 'X' is not one of A, B, C, D"
    assert captured.out == ""
    assert row_counts() == (0, 0, 0)


def test_an_unknown_split_is_a_usage_error(write, capsys):
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "import_mmlu", "x", "--splits", "test,train"])

    assert exited.value.code == 2
    assert "splits are test,val,dev; got 'test,train'" in capsys.readouterr().err


def test_progress_is_drawn_on_a_terminal(write, monkeypatch):
    path = write("mmlu/test/anatomy_test.csv", MMLU_TEST)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    call_command("import_mmlu", str(path.parent), stdout=io.StringIO())

    drawn = terminal.getvalue()
    assert "\rReading  [" in drawn and "\rWriting  [##############################] 2/2" in drawn


def test_no_progress_is_drawn_when_stderr_is_not_a_terminal(write, capsys):
    path = write("mmlu/test/anatomy_test.csv", MMLU_TEST)

    call_command("import_mmlu", str(path.parent), stdout=io.StringIO())

    assert capsys.readouterr().err == ""


def test_import_quality_takes_a_split_for_files_that_do_not_name_one(write):
    line = (
        '{"article_id": "1", "set_unique_id": "1_A", "title": "T", "article": "Text.", '
        '"questions": [{"question": "Q", "options": ["a", "b", "c", "d"], "gold_label": 2}]}\n'
    )
    path = write("QuALITY.v1.0.1.htmlstripped.sample", line)
    out = io.StringIO()

    call_command("import_quality", str(path), "--split", "pilot", stdout=out)

    assert "Items per split: pilot 1; 1 subjects" in out.getvalue()
    assert list(Item.objects.values_list("bank__name", "external_id", "split")) == [("QuALITY", "1_A_1", "pilot")]


def test_import_bank_names_the_bank_after_the_file_by_default(write):
    path = write("my_questions.csv", "id,question,option_a,option_b,answer\nq1,Q,a,b,A\n")

    call_command("import_bank", str(path), stdout=io.StringIO())
    call_command("import_bank", str(path), "--bank", "Named", "--format", "csv", stdout=io.StringIO())

    assert sorted(Bank.objects.values_list("name", "format")) == [("Named", "custom"), ("my_questions", "custom")]
