"""Runs are resumable: cancel or kill one half way, run it again, and every item ends with exactly one result,
with nothing that was finished sent to the model again."""

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.baselines import runner
from oversight.baselines.models import BaselineResult, BaselineRun
from oversight.baselines.runner import create_run, execute, prepare_resume, request_cancel
from oversight.baselines.tasks import run_baseline
from oversight.core.models import Job, ModelEndpoint
from oversight_dev.faketgi import FakeTGI
from tests.baselines.conftest import SCRIPTED, generation_requests, make_items

pytestmark = pytest.mark.django_db

FAST_RETRIES = {"retry_base_s": 0.01, "retry_cap_s": 0.05}


@pytest.fixture
def fast_flush(monkeypatch):
    # Write and read cancel_requested every 50 ms instead of every second, so small runs stop half way.
    monkeypatch.setattr(runner, "FLUSH_INTERVAL_S", 0.05)
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 0.01)


@pytest.fixture
def slow_tgi():
    with FakeTGI(letter_logprobs=SCRIPTED, ttft_ms=15) as server:
        yield server


def requests_per_item(tgi) -> Counter:
    """How many scoring requests each item's prompt got ("Question q7: …" is in the prompt)."""
    return Counter(re.search(r"Question (q\d+):", r.json["inputs"]).group(1) for r in generation_requests(tgi))


def one_result_per_item(run, items) -> bool:
    counts = Counter(BaselineResult.objects.filter(run=run).values_list("item_id", flat=True))
    return set(counts) == {i.pk for i in items} and set(counts.values()) == {1}


def test_a_cancelled_run_stops_early_and_a_resume_finishes_it_without_redoing_anything(bank, slow_tgi, fast_flush):
    items = make_items(bank, 80)
    endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=slow_tgi.url, max_concurrency=2)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot", params=FAST_RETRIES)

    def cancel_after_some(progress):
        if progress.done >= 6:
            request_cancel(run.pk)

    first = execute(run.pk, on_progress=cancel_after_some)
    run.refresh_from_db()
    assert first.outcome == "cancelled" and run.status == "cancelled" and run.cancel_requested
    assert 6 <= run.done < 80 and run.results.count() == run.done
    assert run.finished_at is not None and Job.objects.get(pk=run.job_id).status == "cancelled"

    prepare_resume(run)
    second = execute(run.pk)
    run.refresh_from_db()
    assert second.outcome == "done" and run.status == "done" and run.done == 80
    assert second.scored == 80 - first.scored
    assert one_result_per_item(run, items)
    assert set(requests_per_item(slow_tgi).values()) == {1}  # in-flight items were finished, not dropped
    job = Job.objects.get(pk=run.job_id)
    assert (job.status, job.done, job.total) == ("done", 80, 80)


def test_items_that_already_have_a_result_are_not_sent_again(bank, endpoint, tgi):
    items = make_items(bank, 8)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
    BaselineResult.objects.bulk_create(
        [
            BaselineResult(run=run, item=item, probabilities=[1, 0, 0, 0], predicted=0, correct=item.gold_index == 0)
            for item in items[:3]
        ]
    )

    assert execute(run.pk).outcome == "done"
    assert sorted(requests_per_item(tgi)) == sorted(f"q{i}" for i in range(3, 8))
    assert one_result_per_item(run, items)
    run.refresh_from_db()
    assert run.done == 8 and run.summary["items"] == 8


def test_a_run_whose_executor_died_is_taken_over_once_its_heartbeat_is_stale(bank, endpoint, tgi):
    items = make_items(bank, 6)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
    BaselineResult.objects.bulk_create(
        [BaselineResult(run=run, item=item, probabilities=[1, 0, 0, 0], predicted=0) for item in items[:2]]
    )
    alive = timezone.now() - timedelta(seconds=5)
    BaselineRun.objects.filter(pk=run.pk).update(status="running", claimed_by="dead-worker", heartbeat_at=alive)

    assert execute(run.pk).outcome == "not_claimed"  # its executor might still be alive
    assert generation_requests(tgi) == []

    BaselineRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert execute(run.pk).outcome == "done"
    assert len(generation_requests(tgi)) == 4
    assert one_result_per_item(run, items)


def test_running_a_finished_run_again_does_nothing(bank, endpoint, tgi, run_baseline):
    make_items(bank, 3)
    run = run_baseline(endpoint=endpoint, bank=bank)
    tgi.clear_requests()

    assert execute(run.pk).outcome == "not_claimed"
    assert run_baseline_task_outcome(run.pk) == "not_claimed"
    assert generation_requests(tgi) == []
    assert run.results.count() == 3


def run_baseline_task_outcome(run_id):
    return run_baseline.apply(args=(run_id,)).get()


def test_the_celery_task_runs_a_queued_run_to_the_end(bank, endpoint):
    items = make_items(bank, 5)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")

    assert run_baseline_task_outcome(run.pk) == "done"
    assert one_result_per_item(run, items)


def test_a_run_cancelled_before_it_starts_never_sends_a_request(bank, endpoint, tgi):
    make_items(bank, 3)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
    request_cancel(run.pk)

    assert execute(run.pk).outcome == "not_claimed"
    run.refresh_from_db()
    assert run.status == "cancelled" and generation_requests(tgi) == []


def test_ctrl_c_keeps_what_finished_and_leaves_a_resumable_run(bank, slow_tgi, fast_flush):
    items = make_items(bank, 80)
    endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=slow_tgi.url, max_concurrency=2)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")

    def interrupt(progress):
        if progress.done >= 4:
            raise KeyboardInterrupt

    result = execute(run.pk, on_progress=interrupt)
    run.refresh_from_db()
    assert result.outcome == "cancelled" and result.interrupted and run.status == "cancelled"
    assert 4 <= run.done < 80 and run.message == "interrupted (Ctrl-C)"

    prepare_resume(run)
    assert execute(run.pk).outcome == "done"
    assert one_result_per_item(run, items)


def test_an_executor_that_lost_its_claim_stops(bank, slow_tgi, fast_flush):
    make_items(bank, 80)
    endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=slow_tgi.url, max_concurrency=2)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")

    def taken_over(progress):
        if progress.done >= 4:
            BaselineRun.objects.filter(pk=run.pk).update(claimed_by="someone-else")

    result = execute(run.pk, on_progress=taken_over)
    assert result.outcome == "lost"
    run.refresh_from_db()
    assert run.status == "running" and run.claimed_by == "someone-else" and run.results.count() < 80


def test_a_study_run_scores_exactly_the_scored_items_of_the_studys_conditions(endpoint):
    from oversight.core.models import ConditionItem
    from tests.factories import make_study

    study = make_study(slug="s1", n_items=3, catch=2)
    scored = set(ConditionItem.objects.filter(study=study, role="scored").values_list("item_id", flat=True))
    run = create_run(endpoint=endpoint, study=study, method="zero-shot")

    assert run.total == len(scored) == 6  # two conditions of 3 disjoint items; the catch items are left out
    assert execute(run.pk).outcome == "done"
    assert set(run.results.values_list("item_id", flat=True)) == scored


def test_a_template_edited_after_the_run_was_created_fails_the_run_clearly(bank, endpoint, tgi):
    make_items(bank, 2)
    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
    template = run.template
    template.text = template.text.replace("Answer:", "Answer (one letter):")
    template.save()

    result = execute(run.pk)
    run.refresh_from_db()
    assert result.outcome == "failed" and run.status == "failed"
    assert "changed since the run was created" in run.message
    assert generation_requests(tgi) == []


def test_starting_a_run_enqueues_it_once_the_creating_transaction_commits(
    bank, endpoint, django_capture_on_commit_callbacks, monkeypatch
):
    from oversight.baselines import tasks

    sent = []
    monkeypatch.setattr(tasks.run_baseline, "apply_async", lambda args, **options: sent.append(*args))
    make_items(bank, 3)
    with django_capture_on_commit_callbacks(execute=True):
        run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
        tasks.start_run(run)
        assert sent == []  # nothing before the commit

    assert sent == [run.pk]
