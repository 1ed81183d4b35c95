"""Protocol transcripts in an export: what each judge read, turn by turn, with the model's record; a pilot's own
transcripts only when pilots are exported."""

import pytest

from oversight.assistant.models import TranscriptTurn
from oversight.core.models import Transcript
from oversight.exports.services import export_study
from tests.exports.helpers import all_rows

pytestmark = pytest.mark.django_db


def test_every_judged_trial_links_to_its_exported_transcript_and_turns(study, tmp_path):
    export_study(study=study, formats=["parquet"], out_dir=tmp_path)
    rows = all_rows(tmp_path, "parquet")
    transcripts = {t["transcript_id"]: t for t in rows["transcripts"]}
    judged = [t for t in rows["trials"] if t["transcript_id"] is not None]
    assert judged and all(t["condition_kind"] == "debate" and t["transcript_id"] in transcripts for t in judged)
    for trial in judged:
        transcript = transcripts[trial["transcript_id"]]
        assert len(transcript["options"]) == 2 and transcript["argues"] == [0, 1]
        if trial["choice"] is not None:
            assert trial["choice"] in transcript["options"]
    turns = [t for t in rows["transcript_turns"] if t["transcript_id"] in transcripts]
    stored = TranscriptTurn.objects.get(pk=turns[0]["turn_id"])
    assert (turns[0]["content"], turns[0]["private"], turns[0]["raw"]) == (stored.content, stored.private, stored.raw)
    assert turns[0]["private"].startswith("<thinking>") and turns[0]["endpoint"] == "exp advocate"
    assert turns[0]["prompt_hash"] == stored.prompt_hash and turns[0]["context"]["assignment"] in {"A", "B"}
    debate = next(c for c in rows["conditions"] if c["kind"] == "debate")
    assert debate["protocol"]["rounds"] == 1 and debate["protocol"]["word_limit"] == 150
    assert next(c for c in rows["conditions"] if c["kind"] == "unaided")["protocol"] == {}


def test_a_pilots_own_transcripts_are_exported_only_with_the_pilots(study, tmp_path):
    pilot = study.people["pilot"]
    theirs = set(Transcript.objects.filter(trials__participant=pilot).values_list("pk", flat=True))
    assert theirs
    export_study(study=study, formats=["parquet"], out_dir=tmp_path / "without")
    without = all_rows(tmp_path / "without", "parquet")
    assert not theirs & {t["transcript_id"] for t in without["transcripts"]}
    assert not theirs & {t["transcript_id"] for t in without["transcript_turns"]}
    export_study(study=study, formats=["parquet"], include_pilots=True, out_dir=tmp_path / "with")
    assert theirs <= {t["transcript_id"] for t in all_rows(tmp_path / "with", "parquet")["transcripts"]}
