"""Building the analysis tables from the database, and `manage.py sandwich_report`."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from oversight.analysis.report import build_report
from oversight.assistant.models import ChatMessage
from oversight.banks.models import Bank
from oversight.baselines.models import BaselineResult, BaselineRun, PromptTemplate
from oversight.baselines.runner import run_summary
from oversight.core.models import Exclusion, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, finalize_expired_trials, trial_select, trial_show, trial_submit
from oversight.reports.load import load_tables
from oversight.reports.services import data_version
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


def test_the_command_takes_the_tie_rule_and_states_it(study):
    out = StringIO()
    call_command(
        "sandwich_report", "rep", "--format", "json", "--resamples", "0", "--tie-rule", "lowest-option", stdout=out
    )
    assert json.loads(out.getvalue())["method"]["tie_rule"] == "lowest_option"
    out = StringIO()
    call_command("sandwich_report", "rep", "--resamples", "0", "--seed", "8", stdout=out)
    assert "Tie rule: random" in out.getvalue() and "seed 8" in out.getvalue()


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
    assert [
        (r["id"], r["method"], r["endpoint"], r["split"], r["scope"], r["status"]) for r in tables.baseline_runs
    ] == [
        (first.pk, "zero-shot", endpoint, "val", "study", "done"),
        (later.pk, "zero-shot", endpoint, "", "study", "done"),
    ]
    assert len(tables.baselines) == len(items) + 1
    assert tables.baselines[0].probabilities == (0.7, 0.1, 0.1, 0.1)
    data = build_report(tables, resamples=0).to_dict()["with_exclusions"]
    assert [r["label"] for r in data["table"]["rows"]][2] == "Model (zero-shot) on the study's items"
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
    assert [(r["id"], r["method"], r["endpoint"], r["split"], r["status"]) for r in tables.baseline_runs] == [
        (run.pk, "zero-shot", endpoint.name, "", "done")
    ]
    data = build_report(tables, resamples=0).to_dict()["with_exclusions"]
    zero_shot = data["baselines"][0]
    assert zero_shot["n_results"] == len(scored) == 6
    assert zero_shot["all"]["accuracy"]["value"] == pytest.approx(100 * 4 / 6)
    assert zero_shot["all"]["bins"][3]["n"] == 6  # 85% is nearer 80 than 100
    assert zero_shot["all"]["ce"]["value"] == pytest.approx(80 - 100 * 4 / 6)


def test_a_bank_run_gives_the_model_on_its_split_and_on_the_studys_items(study):
    """The paper's model number is the whole split; the paired number is the study's items (issue 14.3)."""
    bank = study.tasks.get(name="Main").bank
    scored = {r.item_id for r in load_tables(study).trials if r.role == "scored"}
    run = zero_shot_run(study, split="")
    BaselineRun.objects.filter(pk=run.pk).update(study=None, bank=bank)
    right = set(sorted(scored)[:2])  # 2 of the 6 study items; 10 of the bank's 12 items in all
    for item in bank.items.all():
        correct = item.pk in right or item.pk not in scored
        BaselineResult.objects.create(
            run=run, item=item, probabilities=[0.3, 0.3, 0.2, 0.2], predicted=0, correct=correct
        )
    run.refresh_from_db()
    BaselineRun.objects.filter(pk=run.pk).update(summary=run_summary(run))

    data = build_report(load_tables(study), resamples=0).to_dict()["with_exclusions"]
    rows = {r["label"]: r for r in data["table"]["rows"]}
    split = rows["Model (zero-shot) on its split"]["cells"]["Main"]
    assert (split["n_items"], split["accuracy"]["value"]) == (12, pytest.approx(100 * 8 / 12))
    study_items = rows["Model (zero-shot) on the study's items"]["cells"]["Main"]
    assert (study_items["n_items"], study_items["accuracy"]["value"]) == (6, pytest.approx(100 * 2 / 6))


def test_the_expert_row_follows_the_tasks_bank_format(study):
    bank = study.tasks.get(name="Main").bank
    Bank.objects.filter(pk=bank.pk).update(format=Bank.Format.QUALITY)
    tables = load_tables(study)
    assert tables.task_formats["Main"] == "quality"
    expert = build_report(tables, resamples=0).to_dict()["with_exclusions"]["table"]["rows"][-1]
    assert expert["kind"] == "expert" and expert["cells"]["Main"]["accuracy"]["value"] == 93.5


@pytest.fixture
def timed_study():
    return make_study(slug="timed", n_items=2, time_limit_s=60)


def test_a_trial_past_its_deadline_counts_as_timed_out_with_its_last_selection_before_the_sweeper_runs(timed_study):
    participant = participant_join(study=timed_study, params={"pid": "slow"}, consent=True)
    trials = list(participant.trials.select_related("item").filter(role="scored").order_by("position"))
    first, abandoned = trials[0], trials[1]
    trial_show(trial=first, now=START)
    trial_submit(
        trial=first, answer=Answer(choice=first.item.gold_index, confidence=80), now=START + timedelta(seconds=10)
    )
    trial_show(trial=abandoned, now=START)
    trial_select(trial=abandoned, answer=Answer(choice=abandoned.item.gold_index, confidence=60), now=START)
    abandoned.refresh_from_db()
    after = abandoned.deadline_at + timedelta(seconds=5)

    before_sweep = load_tables(timed_study, now=after)
    row = next(t for t in before_sweep.trials if t.item_id == abandoned.item_id and t.role == "scored")
    assert (row.status, row.choice, row.confidence, row.correct) == ("timed_out", abandoned.item.gold_index, 60, True)
    assert row.submitted_at == abandoned.deadline_at and row.submit_kind == "server"
    still_open = load_tables(timed_study, now=abandoned.deadline_at - timedelta(seconds=1))
    assert next(t for t in still_open.trials if t.item_id == abandoned.item_id).status == "shown"

    assert finalize_expired_trials(now=after + timedelta(minutes=3)) == 1  # the sweeper, three minutes late
    after_sweep = load_tables(timed_study, now=after + timedelta(minutes=5))
    assert build_report(before_sweep, resamples=50).to_json() == build_report(after_sweep, resamples=50).to_json()


def test_the_report_fingerprint_changes_when_a_deadline_passes(timed_study):
    participant = participant_join(study=timed_study, params={"pid": "slow"}, consent=True)
    trial = participant.trials.filter(role="scored").order_by("position").first()
    trial_show(trial=trial, now=START)
    trial.refresh_from_db()
    assert data_version(timed_study, now=trial.deadline_at - timedelta(seconds=1)) != data_version(
        timed_study, now=trial.deadline_at + timedelta(seconds=1)
    )
