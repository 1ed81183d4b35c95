import json

import pytest

from oversight.banks.importers import BankImportError, import_custom
from oversight.banks.importers.custom import CSV_OPTIONAL, CSV_REQUIRED
from oversight.banks.models import Bank, Item, Passage

from .helpers import db_snapshot, row_counts

pytestmark = pytest.mark.django_db

CSV = (
    "id,question,option_a,option_b,option_c,option_d,answer,subject,split,difficult,passage_id,passage_title,"
    "passage_text,meta_source\n"
    "q1,What is 2+2?,3,4,,,B,arithmetic,main,0,,,,textbook\n"
    'q2,"Which, if any, is prime?",4,6,7,9,c,arithmetic,practice,yes,,,,\n'
    'q3,Who left?,Ann,Bob,Cy,,,reading,main,,p1,The Trip,"Ann stayed.\n\nBob left.",\n'
    "q4,Who stayed?,Ann,Bob,Cy,,A,reading,main,,p1,,,\n"
)


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


JSONL = jsonl(
    {"id": "j1", "question": "Pick B", "options": ["a", "b"], "answer": "B", "subject": "s", "split": "main"},
    {"id": "j2", "question": "Pick 3", "options": ["a", "b", "c", "d", "e", "f"], "answer": 3, "difficult": True},
    {
        "id": "j3",
        "question": "Unlabeled, with a passage",
        "options": ["x", "y", "z"],
        "answer": None,
        "passage": {"id": "p1", "title": "A text", "text": "Once upon a time."},
        "metadata": {"author": "me", "tags": ["a"]},
    },
    {"id": "j4", "question": "Same passage", "options": ["x", "y"], "passage_id": "p1"},
)


def import_fails(path, **kwargs) -> str:
    before = db_snapshot()
    with pytest.raises(BankImportError) as caught:
        import_custom(path=path, bank_name="Custom", **kwargs)
    assert db_snapshot() == before
    return str(caught.value)


def test_it_imports_a_csv_bank(write):
    result = import_custom(path=write("bank.csv", CSV), bank_name="Custom")

    assert result.split_counts == {"main": 3, "practice": 1}
    assert (result.items_new, result.passages_new) == (4, 1)
    assert Bank.objects.get().format == Bank.Format.CUSTOM
    q1, q2, q3, q4 = Item.objects.order_by("external_id")
    assert (q1.options, q1.gold_index, q1.difficult, q1.metadata) == (["3", "4"], 1, False, {"source": "textbook"})
    assert (q2.text, q2.gold_index, q2.difficult, q2.split) == ("Which, if any, is prime?", 2, True, "practice")
    assert (q3.gold_index, q3.difficult, q3.metadata) == (None, None, {})
    passage = Passage.objects.get()
    assert (passage.external_id, passage.title, passage.text) == ("p1", "The Trip", "Ann stayed.\n\nBob left.")
    assert q3.passage == q4.passage == passage


def test_it_imports_a_jsonl_bank(write):
    result = import_custom(path=write("bank.jsonl", JSONL), bank_name="Custom")

    assert (result.items_new, result.passages_new) == (4, 1)
    j1, j2, j3, j4 = Item.objects.order_by("external_id")
    assert (j1.gold_index, j1.subject, j1.split) == (1, "s", "main")
    assert (j2.gold_index, j2.difficult, len(j2.options)) == (2, True, 6)
    assert (j3.gold_index, j3.metadata, j3.passage.title) == (None, {"author": "me", "tags": ["a"]}, "A text")
    assert j4.passage == j3.passage


def test_a_passage_id_may_refer_to_a_passage_already_in_the_bank(write):
    import_custom(path=write("bank.jsonl", JSONL), bank_name="Custom")

    result = import_custom(
        path=write("more.jsonl", jsonl({"id": "j5", "question": "Q", "options": ["a", "b"], "passage_id": "p1"})),
        bank_name="Custom",
    )

    assert result.items_new == 1
    assert Item.objects.get(external_id="j5").passage.external_id == "p1"


def test_the_format_option_overrides_the_extension(write):
    result = import_custom(path=write("bank.txt", CSV), bank_name="Custom", format="csv")

    assert result.items_new == 4


def test_a_second_import_changes_nothing_and_a_changed_row_is_updated(write):
    path = write("bank.csv", CSV)
    import_custom(path=path, bank_name="Custom")
    before = db_snapshot()
    assert import_custom(path=path, bank_name="Custom").items_unchanged == 4
    assert db_snapshot() == before

    write("bank.csv", CSV.replace("What is 2+2?,3,4,,,B", "What is 2+2?,3,4,,,A"))
    result = import_custom(path=path, bank_name="Custom")

    assert (result.items_updated, result.updated_item_ids, result.items_unchanged) == (1, ["q1"], 3)
    assert Item.objects.get(external_id="q1").gold_index == 0


def test_it_accepts_a_utf8_byte_order_mark(write):
    path = write("bank.csv", "\ufeffid,question,option_a,option_b,answer\nq1,Café?,oui,non,A\n")

    import_custom(path=path, bank_name="Custom")

    assert Item.objects.get().text == "Café?"


# --- Bad input -----------------------------------------------------------------------------------------


def test_it_rejects_a_csv_row_with_the_wrong_number_of_columns(write):
    path = write("bank.csv", 'id,question,option_a,option_b,answer\nq1,Q,a,b,A\n"q2","Q\nQ",a,b\nq3,Q,a,b,B\n')

    assert import_fails(path) == f"{path}:3: expected 5 columns (as in the header), found 4"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_csv_answer_letter_outside_the_options(write):
    path = write("bank.csv", "id,question,option_a,option_b,option_c,option_d,answer\nq1,Q,a,b,c,d,E\n")

    assert import_fails(path) == f"{path}:2: answer 'E' is not one of A, B, C, D (the item has 4 options)"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_blank_option_before_a_filled_one(write):
    path = write("bank.csv", "id,question,option_a,option_b,option_c,option_d\nq1,Q,a,,c,\n")

    assert import_fails(path) == f"{path}:2: option_b is blank but option_c is not (blanks go last)"


def test_it_rejects_an_item_with_one_option(write):
    path = write("bank.csv", "id,question,option_a,option_b\nq1,Q,a,\n")

    assert import_fails(path) == f"{path}:2: an item needs 2 to 6 options, found 1"


def test_it_rejects_an_unknown_csv_column(write):
    path = write("bank.csv", "id,question,option_a,option_b,optoin_c\nq1,Q,a,b,c\n")

    assert import_fails(path).startswith(f"{path}:1: unknown column 'optoin_c'; columns are id, question,")


def test_it_rejects_a_csv_without_a_header_row(write):
    path = write("bank.csv", "q1,Q,a,b\n")

    assert import_fails(path).startswith(
        f"{path}:1: unknown columns 'q1', 'q', 'a', 'b'; "
        "missing columns 'id', 'question', 'option_a', 'option_b' (the header row is required); columns are id,"
    )


def test_it_reports_every_problem_of_a_csv_header_at_once(write):
    path = write("bank.csv", "ID,question_text,option_a,answer,subject,subject,answer\nq1,Q,a,A,x,x,A\n")

    assert import_fails(path) == (
        f"{path}:1: unknown column 'question_text'; columns 'answer', 'subject' appear twice; "
        "missing columns 'question', 'option_b' (the header row is required); "
        f"columns are {', '.join((*CSV_REQUIRED, *CSV_OPTIONAL))} and meta_<name> for metadata"
    )
    assert row_counts() == (0, 0, 0)


def test_it_reports_every_missing_jsonl_key_at_once(write):
    path = write("bank.jsonl", jsonl({"answer": "A", "subject": "s"}))

    assert import_fails(path) == f"{path}:1: missing 'id', 'question', 'options'"


def test_it_rejects_an_id_used_twice(write):
    path = write("bank.csv", "id,question,option_a,option_b\nq1,Q,a,b\nq2,Q,a,b\nq1,Q,a,b\n")

    assert import_fails(path) == f"{path}:4: id 'q1' already used on line 2"


def test_it_rejects_a_passage_defined_twice_with_different_text(write):
    path = write(
        "bank.csv",
        "id,question,option_a,option_b,passage_id,passage_text\nq1,Q,a,b,p,One.\nq2,Q,a,b,p,Two.\n",
    )

    assert import_fails(path) == f"{path}:3: passage 'p' has a different title or text than at {path}:2"


def test_it_rejects_a_reference_to_a_passage_that_exists_nowhere(write):
    path = write("bank.jsonl", jsonl({"id": "j", "question": "Q", "options": ["a", "b"], "passage_id": "nowhere"}))

    message = import_fails(path)

    assert message == f"{path}:1: passage 'nowhere' is neither defined in the file nor stored in the bank"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_jsonl_answer_outside_the_options(write):
    path = write("bank.jsonl", jsonl({"id": "j", "question": "Q", "options": ["a", "b", "c"], "answer": 4}))

    assert import_fails(path) == f"{path}:1: answer 4 is not in 1–3 (the item has 3 options)"


def test_it_rejects_an_invalid_json_line(write):
    path = write("bank.jsonl", JSONL + "{'id': 'single quotes'}\n")

    message = import_fails(path)

    assert message == f"{path}:5: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_unknown_jsonl_key(write):
    path = write("bank.jsonl", jsonl({"id": "j", "question": "Q", "options": ["a", "b"], "answr": "A"}))

    assert import_fails(path).startswith(f"{path}:1: unknown key 'answr'; keys are answer, difficult, id,")


def test_it_rejects_a_file_that_is_not_utf8(write):
    path = write("bank.csv", "id,question,option_a,option_b\nq1,Qu\xe9?,a,b\n".encode("cp1252"))

    assert import_fails(path) == f"{path}:2: not valid UTF-8 (byte 0xe9 at column 6); save the file as UTF-8"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_empty_file(write):
    path = write("bank.jsonl", "")

    assert import_fails(path) == f"{path}:1: the file is empty"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_csv_with_only_a_header(write):
    path = write("bank.csv", "id,question,option_a,option_b\n")

    assert import_fails(path) == f"{path}: the file holds no items"


def test_it_rejects_an_unknown_extension_without_a_format(write):
    path = write("bank.xlsx", "PK")

    assert import_fails(path) == f"{path}: cannot tell the format from the file name; give --format csv or jsonl"


def test_it_rejects_a_directory(tmp_path):
    assert import_fails(tmp_path) == f"{tmp_path}: expected a .csv or .jsonl file"
