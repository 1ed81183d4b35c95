"""Building the analysis tables from the database, and `manage.py sandwich_report`."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from oversight.analysis.report import build_report
from oversight.assistant.models import ChatMessage
from oversight.baselines.models import BaselineResult, BaselineRun, PromptTemplate
from oversight.core.models import Exclusion, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.reports.load import load_tables
from tests.factories import make_study

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def answer_everything(participant, *, right_when):
    """Show and answer each trial in order, 30 s apart; right or wrong as `right_when(trial)` says."""
    now = START
    for trial in participant.trials.select_related("item", "condition").order_by("position"):
        trial_show(trial=trial, now=now)
        gold = trial.item.gold_index
        choice = gold if right_when(trial) else (gold + 1) % 4
        trial_submit(trial=trial, answer=Answer(choice=choice, confidence=80), now=now + timedelta(seconds=30))
        now += timedelta(seconds=60)


@pytest.fixture
def study(alice):
    study = make_study(slug="rep", n_items=3, catch=1, practice=1)
    everyone_right = participant_join(study=study, params={"pid": "a"}, consent=True)
    answer_everything(everyone_right, right_when=lambda t: True)
    assisted_only = participant_join(study=study, params={"pid": "b"}, consent=True)
    answer_everything(assisted_only, right_when=lambda t: t.condition.kind == "assisted" or t.role != "scored")
    outlier = participant_join(study=study, params={"pid": "c"}, consent=True)
    answer_everything(outlier, right_when=lambda t: False)
    forgiven = participant_join(study=study, params={"pid": "d"}, consent=True)
    answer_everything(forgiven, right_when=lambda t: True)
    pilot = participant_join(study=study, params={"pid": "p"}, consent=True, is_pilot=True)
    answer_everything(pilot, right_when=lambda t: False)
    Exclusion.objects.create(
        participant=outlier, reason="Unaided accuracy far from the others", rule="outlier", created_by=alice
    )
    Exclusion.objects.create(
        participant=forgiven,
        reason="A mistake",
        rule="manual",
        created_by=alice,
        revoked_by=alice,
        revoked_at=timezone.now(),
    )

    first = everyone_right.trials.filter(condition__kind="assisted", role="scored").order_by("position").first()
    ChatMessage.objects.create(trial=first, seq=0, role="user", content="What does the story say?")
    ChatMessage.objects.create(
        trial=first,
        seq=1,
        role="assistant",
        content="…",
        quotes=[{"text": "a", "verified": True}, {"text": "b", "verified": False}],
    )
    ChatMessage.objects.create(trial=first, seq=2, role="reset")
    ChatMessage.objects.create(trial=first, seq=3, role="user", content="Again?")
    study.people = {
        "right": everyone_right,
        "assisted_only": assisted_only,
        "outlier": outlier,
        "forgiven": forgiven,
        "pilot": pilot,
    }
    study.chatted_trial = first
    return study


def test_it_builds_one_row_per_trial_with_its_task_block_position_and_chat(study):
    tables = load_tables(study)
    assert tables.slug == "rep" and tables.confidence_format == "likert"
    assert [c.kind for c in tables.conditions] == ["assisted", "unaided"]
    assert tables.tasks == ["Main"]
    assert len(tables.trials) == Trial.objects.filter(participant__study=study).count() == 5 * (3 + 3 + 1 + 1)
    by_role = {}
    for row in tables.trials:
        by_role.setdefault(row.role, set()).add(row.task)
    assert by_role == {"scored": {"Main"}, "catch": {"Catch"}, "practice": {"Practice"}}

    chatted = next(
        r
        for r in tables.trials
        if r.participant_id == study.chatted_trial.participant_id
        and r.item_id == study.chatted_trial.item_id
        and r.condition_id == study.chatted_trial.condition_id
    )
    assert (chatted.turns, chatted.resets, chatted.quotes, chatted.quotes_verified) == (2, 1, 2, 1)
    assert chatted.seconds_used == 30

    right = study.people["right"].pk
    for condition in tables.conditions:
        block = [
            r
            for r in tables.trials
            if r.participant_id == right and r.condition_id == condition.id and r.role == "scored"
        ]
        assert sorted(r.block_position for r in block) == [0, 1, 2]
        assert all(r.correct and r.choice == r.gold and r.n_options == 4 and r.confidence == 80 for r in block)


def test_it_knows_the_active_exclusions_and_the_pilots(study):
    tables = load_tables(study)
    assert tables.excluded == {study.people["outlier"].pk}
    assert tables.pilots == {study.people["pilot"].pk}
    assert tables.participant_status[study.people["right"].pk] == "active"


def test_the_report_from_the_database_leaves_out_pilots_and_applies_exclusions(study):
    data = build_report(load_tables(study), resamples=50).to_dict()
    people = study.people
    assert data["with_exclusions"]["participant_ids"] == sorted(
        [people["right"].pk, people["assisted_only"].pk, people["forgiven"].pk]
    )
    assert people["outlier"].pk in data["without_exclusions"]["participant_ids"]
    assert people["pilot"].pk not in data["without_exclusions"]["participant_ids"]
    assisted, unaided = data["with_exclusions"]["conditions"]
    assert assisted["all"]["accuracy"]["value"] == 100
    assert unaided["all"]["accuracy"]["value"] == pytest.approx(200 / 3)
    assert data["without_exclusions"]["conditions"][1]["all"]["accuracy"]["value"] == pytest.approx(50)
    assert assisted["all"]["dialogue"]["turns_per_item"] == pytest.approx(2 / 9)


def test_the_command_prints_json(study):
    out = StringIO()
    call_command("sandwich_report", "rep", "--format", "json", "--seed", "3", "--resamples", "40", stdout=out)
    data = json.loads(out.getvalue())
    assert data["study"]["slug"] == "rep"
    assert data["method"]["bootstrap"] == data["method"]["bootstrap"] | {"seed": 3, "resamples": 40}
    rows = data["with_exclusions"]["table"]["rows"]
    assert [r["label"] for r in rows] == ["Unaided", "Unaided vote", "Assisted", "Assisted vote"]


def test_the_command_prints_markdown_by_default(study):
    out = StringIO()
    call_command("sandwich_report", "rep", "--resamples", "40", stdout=out)
    text = out.getvalue()
    assert text.startswith("# Sandwiching report: Study rep (`rep`)")
    assert "| Assisted | 100.0 [100.0, 100.0] |" in text
    assert f"Excluded: P{study.people['outlier'].pk}." in text


def test_the_command_rejects_an_unknown_study_and_negative_resamples(study):
    with pytest.raises(CommandError, match="No study"):
        call_command("sandwich_report", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="resamples"):
        call_command("sandwich_report", "rep", "--resamples", "-1", stdout=StringIO())


def zero_shot_run(study, **fields):
    template, _ = PromptTemplate.objects.get_or_create(
        name="zs", method="zero-shot", defaults={"text": "Question: {question}"}
    )
    endpoint = study.conditions.get(kind="assisted").endpoint
    return BaselineRun.objects.create(
        endpoint=endpoint,
        study=study,
        method="zero-shot",
        template=template,
        template_hash=template.content_hash,
        status="done",
        **fields,
    )


def test_it_keeps_each_items_successful_result_over_a_later_error(study):
    items = sorted({r.item_id for r in load_tables(study).trials if r.role == "scored"})
    first = zero_shot_run(study, split="val")
    for n, item_id in enumerate(items):
        BaselineResult.objects.create(
            run=first, item_id=item_id, probabilities=[0.7, 0.1, 0.1, 0.1], predicted=0, correct=n % 2 == 0
        )
    later = zero_shot_run(study)
    BaselineResult.objects.create(
        run=later, item_id=items[0], probabilities=None, predicted=None, correct=None, error="timeout"
    )

    tables = load_tables(study)
    endpoint = first.endpoint.name
    assert tables.baseline_runs == [
        {"id": first.pk, "method": "zero-shot", "endpoint": endpoint, "split": "val", "status": "done"},
        {"id": later.pk, "method": "zero-shot", "endpoint": endpoint, "split": "", "status": "done"},
    ]
    assert len(tables.baselines) == len(items) + 1
    assert tables.baselines[0].probabilities == (0.7, 0.1, 0.1, 0.1)
    data = build_report(tables, resamples=0).to_dict()["with_exclusions"]
    assert [r["label"] for r in data["table"]["rows"]][2] == "Model (zero-shot)"
    base = data["baselines"][0]
    # The later run's error on the first item is dropped in favour of the earlier successful result.
    assert base["n_results"] == len(items) and base["n_errors"] == 0
    assert base["all"]["accuracy"]["value"] == pytest.approx(
        100 * sum(n % 2 == 0 for n in range(len(items))) / len(items)
    )


def test_it_reads_the_real_baselines_tables(study):
    run = zero_shot_run(study)
    endpoint = run.endpoint
    scored = sorted({r.item_id for r in load_tables(study).trials if r.role == "scored"})
    for n, item_id in enumerate(scored):
        BaselineResult.objects.create(
            run=run, item_id=item_id, probabilities=[0.85, 0.05, 0.05, 0.05], predicted=0, correct=n < 4
        )
    tables = load_tables(study)
    assert tables.baseline_runs == [
        {"id": run.pk, "method": "zero-shot", "endpoint": endpoint.name, "split": "", "status": "done"}
    ]
    data = build_report(tables, resamples=0).to_dict()["with_exclusions"]
    zero_shot = data["baselines"][0]
    assert zero_shot["n_results"] == len(scored) == 6
    assert zero_shot["all"]["accuracy"]["value"] == pytest.approx(100 * 4 / 6)
    assert zero_shot["all"]["bins"][3]["n"] == 6  # 85% is nearer 80 than 100
    assert zero_shot["all"]["ce"]["value"] == pytest.approx(80 - 100 * 4 / 6)
