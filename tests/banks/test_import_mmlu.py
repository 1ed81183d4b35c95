import io
import tarfile
import zipfile
from unittest import mock

import pytest

from oversight.banks.importers import BankImportError, import_mmlu
from oversight.banks.models import Bank, Item

from .helpers import db_snapshot, row_counts

pytestmark = pytest.mark.django_db

ALGEBRA_TEST = (
    '"Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",0,4,2,6,B\n'
    "Which is a group?,Z under +,N under +,Z under *,none,A\n"
)
# Embedded newlines, a CRLF row, a bare \r inside quotes and no newline after the last row.
ANATOMY_TEST = (
    '"Which bone\nis the longest?",femur,tibia,"ulna\r\n(forearm)",radius,A\r\n'
    '"What does ""cardiac"" refer to?",heart,lung,liver,"kid\rney",A\n'
    "Last row,a,b,c,d,D"
)
ANATOMY_DEV = "Dev question,a,b,c,d,C\n"


def tar_bytes(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def mmlu_tree(write):
    write("mmlu/test/abstract_algebra_test.csv", ALGEBRA_TEST)
    write("mmlu/test/anatomy_test.csv", ANATOMY_TEST)
    write("mmlu/dev/anatomy_dev.csv", ANATOMY_DEV)
    return write("mmlu/README.txt", "not a question file").parent


def test_it_imports_a_directory_of_split_directories(mmlu_tree):
    result = import_mmlu(path=mmlu_tree)

    assert result.split_counts == {"test": 5, "dev": 1}
    assert (result.items_new, result.items_updated, result.items_unchanged) == (6, 0, 0)
    assert result.subject_count == 2
    bank = Bank.objects.get(name="MMLU")
    assert bank.format == Bank.Format.MMLU
    first = Item.objects.get(external_id="abstract_algebra_test.csv:0")
    assert first.text.startswith("Find the degree for the given field extension")
    assert first.options == ["0", "4", "2", "6"]
    assert (first.gold_index, first.subject, first.split, first.passage) == (1, "abstract_algebra", "test", None)
    assert Item.objects.get(external_id="anatomy_dev.csv:0").split == "dev"


def test_it_keeps_embedded_newlines_crlf_rows_and_bare_carriage_returns(mmlu_tree):
    import_mmlu(path=mmlu_tree)

    items = {item.external_id: item for item in Item.objects.filter(subject="anatomy", split="test")}
    assert sorted(items) == ["anatomy_test.csv:0", "anatomy_test.csv:1", "anatomy_test.csv:2"]
    assert items["anatomy_test.csv:0"].text == "Which bone\nis the longest?"
    assert items["anatomy_test.csv:0"].options[2] == "ulna\r\n(forearm)"
    assert items["anatomy_test.csv:1"].text == 'What does "cardiac" refer to?'
    assert items["anatomy_test.csv:1"].options[3] == "kid\rney"
    assert items["anatomy_test.csv:2"].gold_index == 3


def test_it_imports_the_official_tar_and_ignores_auxiliary_train(write):
    path = write(
        "data.tar",
        tar_bytes(
            {
                "data/test/anatomy_test.csv": ANATOMY_TEST,
                "data/val/anatomy_val.csv": ANATOMY_DEV,
                "data/README.txt": "readme",
                # Named like an MMLU file on purpose: auxiliary_train really has an mc_test.csv.
                "data/auxiliary_train/mc_test.csv": "aux,a,b,c,d,A\n",
                "data/auxiliary_train/race.csv": "x,y\n",
            }
        ),
    )

    result = import_mmlu(path=path)

    assert result.split_counts == {"test": 3, "val": 1}
    assert not Item.objects.filter(subject="mc").exists()


def test_it_imports_a_zip_and_skips_macos_resource_forks(write):
    path = write(
        "mmlu.zip",
        zip_bytes(
            {
                "data/test/anatomy_test.csv": ANATOMY_TEST,
                "__MACOSX/data/test/._anatomy_test.csv": b"\x00\x05\x16\x07\xff binary",
            }
        ),
    )

    result = import_mmlu(path=path)

    assert result.split_counts == {"test": 3}


def test_it_imports_one_split_directory_or_one_file(mmlu_tree):
    assert import_mmlu(path=mmlu_tree / "dev").split_counts == {"dev": 1}
    assert import_mmlu(path=mmlu_tree / "test" / "anatomy_test.csv").split_counts == {"test": 3}
    assert Item.objects.count() == 4


def test_it_imports_only_the_requested_splits(mmlu_tree):
    result = import_mmlu(path=mmlu_tree, splits=["dev"], bank_name="MMLU dev")

    assert result.split_counts == {"dev": 1}
    assert Bank.objects.get().name == "MMLU dev"


def test_a_second_import_changes_nothing(mmlu_tree):
    import_mmlu(path=mmlu_tree)
    before = db_snapshot()

    result = import_mmlu(path=mmlu_tree)

    assert (result.items_new, result.items_updated, result.items_unchanged) == (0, 0, 6)
    assert result.updated_item_ids == []
    assert db_snapshot() == before


def test_it_updates_changed_items_and_reports_them(mmlu_tree, write):
    import_mmlu(path=mmlu_tree)
    write("mmlu/test/abstract_algebra_test.csv", ALGEBRA_TEST.replace("none,A", "none,D"))

    result = import_mmlu(path=mmlu_tree)

    assert (result.items_new, result.items_updated, result.items_unchanged) == (0, 1, 5)
    assert result.updated_item_ids == ["abstract_algebra_test.csv:1"]
    assert Item.objects.get(external_id="abstract_algebra_test.csv:1").gold_index == 3
    assert Item.objects.count() == 6


def test_it_keeps_items_that_a_later_import_no_longer_contains(mmlu_tree):
    import_mmlu(path=mmlu_tree)

    result = import_mmlu(path=mmlu_tree, splits=["dev"])

    assert result.items_not_in_import == 5
    assert Item.objects.count() == 6


def test_it_reports_progress_while_reading_and_writing(mmlu_tree):
    calls = []

    import_mmlu(path=mmlu_tree, progress=lambda stage, done, total: calls.append((stage, done, total)))

    assert calls[0] == ("read", 0, 3) and ("read", 3, 3) in calls
    assert calls[-1] == ("write", 6, 6)


def test_it_writes_nothing_when_the_database_fails_halfway(mmlu_tree):
    real_bulk_create = Item.objects.bulk_create
    calls = []

    def failing_bulk_create(rows, *args, **kwargs):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real_bulk_create(rows, *args, **kwargs)

    with (
        mock.patch("oversight.banks.importers.writer.BATCH_SIZE", 2),
        mock.patch.object(Item.objects, "bulk_create", failing_bulk_create),
        pytest.raises(RuntimeError),
    ):
        import_mmlu(path=mmlu_tree)

    assert row_counts() == (0, 0, 0)


def test_an_update_that_fails_halfway_leaves_the_existing_bank_as_it_was(mmlu_tree, write):
    # On SQLite the rows are written in short transactions (the deadline sweep must not wait for a whole
    # import); a failure then takes back the rows added and the content changed, as one transaction would.
    import_mmlu(path=mmlu_tree)
    before = (db_snapshot(), list(Item.objects.order_by("external_id").values_list("text", "gold_index")))
    write("mmlu/test/abstract_algebra_test.csv", ALGEBRA_TEST.replace("none,A", "none,D"))
    write("mmlu/dev/abstract_algebra_dev.csv", ANATOMY_DEV)
    real_bulk_update = Item.objects.bulk_update
    calls = []

    def failing_bulk_update(rows, *args, **kwargs):
        calls.append(len(rows))
        if len(calls) == 1:  # the import's update of the changed item; the revert's own update goes through
            raise RuntimeError("the database went away")
        return real_bulk_update(rows, *args, **kwargs)

    with (
        mock.patch.object(Item.objects, "bulk_update", failing_bulk_update),
        pytest.raises(RuntimeError),
    ):
        import_mmlu(path=mmlu_tree)

    after = (db_snapshot(), list(Item.objects.order_by("external_id").values_list("text", "gold_index")))
    assert after == before


# --- Bad input: one message `file:line: problem`, and nothing written --------------------------------------


def import_fails(path, **kwargs) -> str:
    before = db_snapshot()
    with pytest.raises(BankImportError) as caught:
        import_mmlu(path=path, **kwargs)
    assert db_snapshot() == before
    return str(caught.value)


def test_it_rejects_a_row_with_the_wrong_number_of_columns(mmlu_tree, write):
    path = write("mmlu/test/zoology_test.csv", 'Q1,a,b,c,d,A\n"Q2\nspans\nlines",a,b,c,D\nQ3,a,b,c,d,A\n')

    message = import_fails(mmlu_tree)

    # The bad record starts on line 2 (it ends on line 4).
    assert message == f"{path}:2: expected 6 columns (question, A, B, C, D, answer), found 5"
    assert row_counts() == (0, 0, 0)


def test_it_counts_lines_from_where_a_record_starts_after_multiline_records(write):
    path = write("test/zoology_test.csv", '"Q1\n\nthree lines",a,b,c,d,A\r\n"Q2",a,b,c,d\r\n')

    assert import_fails(path.parent) == f"{path}:4: expected 6 columns (question, A, B, C, D, answer), found 5"


def test_it_rejects_an_answer_letter_outside_a_to_d(write):
    path = write("test/zoology_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,d,E\n")

    assert import_fails(path.parent) == f"{path}:2: answer 'E' is not one of A, B, C, D"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_empty_answer(write):
    path = write("test/zoology_test.csv", "Q1,a,b,c,d,\n")

    assert import_fails(path) == f"{path}:1: answer '' is not one of A, B, C, D"


def test_it_rejects_a_file_that_is_not_utf8(write):
    path = write("test/zoology_test.csv", "Q1,a,b,c,d,A\nQ2,caf\xe9,b,c,d,A\n".encode("latin-1"))

    message = import_fails(path.parent)

    assert message == f"{path}:2: not valid UTF-8 (byte 0xe9 at column 7); save the file as UTF-8"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_unterminated_quote_at_the_record_that_opens_it(write):
    path = write("test/zoology_test.csv", 'Q1,a,b,c,d,A\n"Q2,a,b,c,d,A\nQ3,a,b,c,d,A\n')

    assert import_fails(path.parent) == f"{path}:2: CSV syntax error: unexpected end of data"


def test_it_rejects_an_empty_file(write):
    path = write("test/zoology_test.csv", "")

    assert import_fails(path.parent) == f"{path}:1: the file is empty"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()

    message = import_fails(tmp_path / "empty")

    assert message == (
        f"{tmp_path / 'empty'}: no MMLU CSV files (<subject>_{{dev,test,val}}.csv) found in this directory "
        "outside auxiliary_train/"
    )
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_tar_without_mmlu_files(write):
    path = write("data.tar", tar_bytes({"data/auxiliary_train/mc_test.csv": "q,a,b,c,d,A\n", "notes.txt": "x"}))

    message = import_fails(path)

    assert message == (
        f"{path}: no MMLU CSV files (<subject>_{{dev,test,val}}.csv) found in this archive outside auxiliary_train/"
    )
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_zip_without_mmlu_files(write):
    path = write("upload.zip", zip_bytes({"photos/cat.jpg": b"\xff\xd8\xff"}))

    assert "no MMLU CSV files" in import_fails(path)
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_file_that_is_neither_an_archive_nor_an_mmlu_csv(write):
    path = write("data.tar", "this is not a tarball\n")

    message = import_fails(path)

    assert message == (
        f"{path}: not an MMLU source: expected a tar or zip archive, a directory, or a <subject>_<split>.csv file"
    )
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_truncated_archive(write):
    data = tar_bytes({"data/test/anatomy_test.csv": ANATOMY_TEST * 200})
    path = write("data.tar", data[: len(data) // 2])

    assert import_fails(path).startswith(f"{path}: ")
    assert row_counts() == (0, 0, 0)


def test_it_rejects_the_same_subject_and_split_twice(write):
    first = write("mmlu/data/test/anatomy_test.csv", ANATOMY_TEST)
    second = write("mmlu/test/anatomy_test.csv", ANATOMY_TEST)

    message = import_fails(second.parents[1])

    assert message == f"{second}: anatomy_test.csv appears twice (also at {first}); keep one copy"


def test_it_writes_nothing_when_a_later_file_is_bad(mmlu_tree, write):
    import_mmlu(path=mmlu_tree)
    write("mmlu/test/abstract_algebra_test.csv", ALGEBRA_TEST.replace("none,A", "none,D"))  # would be an update
    path = write("mmlu/test/zoology_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,d,F\n")

    assert import_fails(mmlu_tree) == f"{path}:2: answer 'F' is not one of A, B, C, D"
    assert Item.objects.get(external_id="abstract_algebra_test.csv:1").gold_index == 0


def test_it_refuses_to_mix_formats_in_one_bank(mmlu_tree):
    Bank.objects.create(name="MMLU", format=Bank.Format.QUALITY)

    message = import_fails(mmlu_tree)

    assert message == f"{mmlu_tree}: bank 'MMLU' holds QuALITY items; import MMLU items into another bank (--bank NAME)"


def test_it_rejects_unknown_splits(mmlu_tree):
    with pytest.raises(ValueError, match="MMLU splits are test, val, dev; got train"):
        import_mmlu(path=mmlu_tree, splits=["train"])
