import json

import pytest

from oversight.banks.importers import BankImportError, import_quality
from oversight.banks.importers.htmltext import html_to_text
from oversight.banks.importers.quality import split_from_filename
from oversight.banks.models import Bank, Item, Passage

from .helpers import db_snapshot, row_counts

pytestmark = pytest.mark.django_db

ARTICLE_HTML = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"\n "x.dtd">\n<html>\n'
    "  <h1>\n   THE STORY\n  </h1>\n"
    "  <p>\n   It was a dark\n and stormy night &amp; <i>nobody</i> slept.\n  </p>\n"
    '  <p class="center">\n  </p>\n  <hr/>\n'
    "  <p>\n   The end.\n  </p>\n</html>\n"
)
ARTICLE_TEXT = "THE STORY\n\nIt was a dark\n and stormy night & nobody slept.\n\nThe end.\n"


def question(n, set_id="10001_AAAA", gold=1, difficult=0, **extra):
    return {
        "question": f"Question {n}?",
        "question_unique_id": f"{set_id}_{n}",
        "options": ["one", "two", "three", "four"],
        "writer_label": gold,
        "gold_label": gold,
        "validation": [{"untimed_annotator_id": "0001", "untimed_answer": gold}],
        "speed_validation": [{"speed_annotator_id": "0002", "speed_answer": gold}],
        "difficult": difficult,
        **extra,
    }


def record(article_id="10001", set_id="10001_AAAA", questions=None, article=ARTICLE_TEXT, **extra):
    return {
        "article_id": article_id,
        "set_unique_id": set_id,
        "batch_num": "7",
        "writer_id": "1001",
        "source": "Gutenberg",
        "title": "The Story",
        "year": 1950,
        "author": "Writer, A.",
        "topic": "Science fiction",
        "article": article,
        "questions": questions if questions is not None else [question(1, set_id), question(2, set_id, gold=3)],
        "url": "http://example.org/story",
        "license": "Public domain",
        **extra,
    }


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def import_fails(path, **kwargs) -> str:
    before = db_snapshot()
    with pytest.raises(BankImportError) as caught:
        import_quality(path=path, **kwargs)
    assert db_snapshot() == before
    return str(caught.value)


def test_it_imports_questions_with_their_article_as_one_passage(write):
    path = write(
        "QuALITY.v1.0.1.htmlstripped.train",
        jsonl(record(), record(set_id="10001_BBBB", questions=[question(1, "10001_BBBB", gold=4, difficult=1)])),
    )

    result = import_quality(path=path)

    assert (result.items_new, result.passages_new) == (3, 1)
    assert result.split_counts == {"train": 3}
    assert Bank.objects.get().format == Bank.Format.QUALITY
    passage = Passage.objects.get()
    assert (passage.external_id, passage.title, passage.author, passage.text) == (
        "10001",
        "The Story",
        "Writer, A.",
        ARTICLE_TEXT,
    )
    assert passage.metadata == {
        "source": "Gutenberg",
        "topic": "Science fiction",
        "url": "http://example.org/story",
        "year": 1950,
        "license": "Public domain",
    }
    item = Item.objects.get(external_id="10001_BBBB_1")
    assert (item.passage, item.subject, item.split, item.gold_index, item.difficult) == (
        passage,
        "The Story",
        "train",
        3,
        True,
    )
    assert item.options == ["one", "two", "three", "four"]
    assert item.metadata == {
        "set_unique_id": "10001_BBBB",
        "writer_id": "1001",
        "batch_num": "7",
        "writer_label": 4,
        "validation": [{"untimed_annotator_id": "0001", "untimed_answer": 4}],
        "speed_validation": [{"speed_annotator_id": "0002", "speed_answer": 4}],
    }
    assert Item.objects.get(external_id="10001_AAAA_1").difficult is False


def test_it_turns_an_html_article_into_paragraphs_of_text(write):
    path = write("QuALITY.v1.0.1.dev", jsonl(record(article=ARTICLE_HTML)))

    import_quality(path=path)

    assert Passage.objects.get().text == ARTICLE_TEXT


def test_html_to_text_separates_blocks_by_blank_lines_and_keeps_line_breaks():
    html = "<div><p>One <b>bold</b><br>two</p><ul><li>a</li><li>b&nbsp;</li></ul><script>x()</script></div>"

    assert html_to_text(html) == "One bold\ntwo\n\na\n\nb\xa0\n"


def test_it_never_parses_an_htmlstripped_article_as_html(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(article="He wrote <p> on the wall.\n")))

    import_quality(path=path)

    assert Passage.objects.get().text == "He wrote <p> on the wall.\n"


@pytest.mark.parametrize(
    ("filename", "split"),
    [
        ("QuALITY.v1.0.1.htmlstripped.train", "train"),
        ("QuALITY.v1.0.1.dev", "dev"),
        ("QuALITY.v1.0.1.htmlstripped.test.jsonl", "test"),
        ("QuALITY.v1.0.1.htmlstripped.sample", None),
        ("QuALITY.v1.0.1.breakaway.html.jsonl", None),
    ],
)
def test_it_takes_the_split_from_the_file_name(filename, split):
    assert split_from_filename(filename) == split


def test_files_without_a_split_in_their_name_get_the_given_split_or_unknown(write):
    path = write("QuALITY.v1.0.1.htmlstripped.sample", jsonl(record()))

    assert import_quality(path=path).split_counts == {"unknown": 2}
    assert import_quality(path=path, split="pilot", bank_name="Pilot").split_counts == {"pilot": 2}


def test_the_test_split_is_imported_unlabeled(write):
    unlabeled = {"question": "Q?", "question_unique_id": "10001_AAAA_1", "options": ["a", "b", "c", "d"]}
    path = write("QuALITY.v1.0.1.htmlstripped.test", jsonl(record(questions=[unlabeled])))

    import_quality(path=path)

    item = Item.objects.get()
    assert (item.split, item.gold_index, item.difficult, item.metadata) == (
        "test",
        None,
        None,
        {"set_unique_id": "10001_AAAA", "writer_id": "1001", "batch_num": "7"},
    )


def test_it_numbers_questions_without_an_id_after_their_set(write):
    bare = question(1)
    del bare["question_unique_id"]
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(questions=[question(1), bare])))

    # The first question's official id is 10001_AAAA_1, so the second, unnumbered one becomes _2.
    import_quality(path=path)

    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["10001_AAAA_1", "10001_AAAA_2"]


def test_a_directory_with_both_forms_of_a_split_is_read_from_the_htmlstripped_file(write):
    write("quality/QuALITY.v1.0.1.htmlstripped.dev", jsonl(record()))
    html = write("quality/QuALITY.v1.0.1.dev", jsonl(record(article=ARTICLE_HTML)))
    write(
        "quality/QuALITY.v1.0.1.htmlstripped.train", jsonl(record("20002", "20002_CCCC", [question(1, "20002_CCCC")]))
    )
    write("quality/README.md", "# not data")

    result = import_quality(path=html.parent)

    assert result.split_counts == {"dev": 2, "train": 1}
    assert result.warnings == [f"skipped {html}: the htmlstripped form of the same split is imported instead"]


def test_a_second_import_changes_nothing(write):
    path = write(
        "QuALITY.v1.0.1.htmlstripped.dev",
        jsonl(record(), record(set_id="10001_BBBB", questions=[question(1, "10001_BBBB")])),
    )
    import_quality(path=path)
    before = db_snapshot()

    result = import_quality(path=path)

    assert (result.items_unchanged, result.passages_unchanged, result.items_new, result.items_updated) == (3, 1, 0, 0)
    assert db_snapshot() == before


def test_it_updates_a_changed_article_and_reports_it(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record()))
    import_quality(path=path)
    write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(article="A corrected text.\n")))

    result = import_quality(path=path)

    assert (result.passages_updated, result.updated_passage_ids, result.items_unchanged) == (1, ["10001"], 2)
    assert Passage.objects.get().text == "A corrected text.\n"


def test_it_warns_when_the_two_writer_lines_disagree_on_the_article(write):
    path = write(
        "QuALITY.v1.0.1.htmlstripped.dev",
        jsonl(record(), record(set_id="10001_BBBB", questions=[question(1, "10001_BBBB")], article="Other.\n")),
    )

    result = import_quality(path=path)

    assert result.warnings == [f"{path}:2: article 10001 differs from its text at {path}:1; the first was kept"]
    assert Passage.objects.get().text == ARTICLE_TEXT


# --- Bad input -----------------------------------------------------------------------------------------


def test_it_rejects_a_gold_label_outside_1_to_4(write):
    path = write(
        "QuALITY.v1.0.1.htmlstripped.dev",
        jsonl(record(), record("20002", "20002_CCCC", [question(1, "20002_CCCC"), question(2, "20002_CCCC", gold=5)])),
    )

    message = import_fails(path)

    assert message == f"{path}:2: question 2 (20002_CCCC_2): gold_label 5 is not in 1–4"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_gold_label_of_zero(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(questions=[question(1, gold=0)])))

    assert import_fails(path) == f"{path}:1: question 1 (10001_AAAA_1): gold_label 0 is not in 1–4"


def test_it_rejects_a_missing_gold_label_in_a_labeled_split(write):
    unlabeled = question(1)
    del unlabeled["gold_label"]
    path = write("QuALITY.v1.0.1.htmlstripped.train", jsonl(record(questions=[unlabeled])))

    assert (
        import_fails(path) == f"{path}:1: question 1 (10001_AAAA_1): gold_label is missing (the train split is labeled)"
    )


def test_it_rejects_an_invalid_json_line(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record()) + "\n" + '{"article_id": "2", oops}\n')

    message = import_fails(path)

    # Line 2 is blank (skipped); the broken object is on line 3.
    assert message == f"{path}:3: invalid JSON: Expecting property name enclosed in double quotes (column 21)"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_a_file_that_is_not_utf8(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record()).encode() + b'{"title": "Caf\xe9"}\n')

    message = import_fails(path)

    assert message == f"{path}:2: not valid UTF-8 (byte 0xe9 at column 15); save the file as UTF-8"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_empty_file(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", "\n\n")

    assert import_fails(path) == f"{path}:1: the file is empty"
    assert row_counts() == (0, 0, 0)


def test_it_rejects_an_empty_directory(tmp_path):
    message = import_fails(tmp_path)

    assert (
        message == f"{tmp_path}: no QuALITY files (QuALITY.v1.0.1[.htmlstripped].{{train,dev,test}} or *.jsonl) found"
    )
    assert row_counts() == (0, 0, 0)


def test_it_rejects_three_options(write):
    bad = question(1)
    bad["options"] = ["a", "b", "c"]
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(questions=[bad])))

    assert import_fails(path) == f"{path}:1: question 1 (10001_AAAA_1): options must be a list of 4 strings"


def test_it_rejects_a_question_id_used_twice(write):
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(), record(article_id="10002")))

    assert import_fails(path) == f"{path}:2: question id '10001_AAAA_1' already appeared at {path}:1"


def test_it_rejects_a_line_without_an_article(write):
    broken = record()
    del broken["article"]
    path = write("QuALITY.v1.0.1.htmlstripped.dev", jsonl(record(), broken))

    assert import_fails(path) == f"{path}:2: missing 'article'"
