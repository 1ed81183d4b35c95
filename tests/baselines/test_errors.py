"""Bad answers are recorded on their item with a kind, the run goes on, and the summary counts them."""

import pytest

from oversight.baselines.models import BaselineResult
from oversight.baselines.runner import execute, prepare_resume
from oversight.core.models import ModelEndpoint
from oversight_dev import tgiwire
from oversight_dev.faketgi import FakeTGI
from tests.baselines.conftest import SCRIPTED, generation_requests, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["fast", "httpx"])
def run_baseline(request, run_baseline):
    """Every error test runs through both transports: the same kinds must come out of each."""

    def run(**kwargs):
        kwargs["params"] = {"transport": request.param, **kwargs.get("params", {})}
        return run_baseline(**kwargs)

    return run


def tgi_endpoint(tgi, **fields):
    fields = {"request_timeout_s": 5, "max_concurrency": 1, **fields}
    return ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, **fields)


def test_a_server_that_answers_without_top_tokens_gives_no_logprobs_errors(bank, run_baseline, monkeypatch):
    original = tgiwire.details_json

    def without_top_tokens(*args, **kwargs):
        details = original(*args, **kwargs)
        details.pop("top_tokens", None)
        return details

    monkeypatch.setattr(tgiwire, "details_json", without_top_tokens)
    make_items(bank, 3)
    with FakeTGI(letter_logprobs=SCRIPTED) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank)

    assert run.status == "done" and run.done == 3 and run.errors == 3
    for result in run.results.all():
        assert result.error_kind == "no_logprobs" and "top_tokens" in result.error
        assert result.probabilities is None and result.predicted is None and result.correct is None
        assert result.response["api"] == "generate"  # what the server did send is kept
    assert run.summary["errors_by_kind"] == {"no_logprobs": 3} and run.summary["accuracy"] is None


def test_malformed_json_is_recorded_on_the_items_it_hit_and_the_run_continues(bank, run_baseline):
    items = make_items(bank, 5)
    with FakeTGI(letter_logprobs=SCRIPTED, malformed_json_after=0, fault_times=2) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank)

    assert run.status == "done" and run.done == 5 and run.errors == 2
    kinds = [BaselineResult.objects.get(run=run, item=item).error_kind for item in items]
    assert kinds == ["bad_response", "bad_response", "", "", ""]  # one at a time, in item order
    assert "JSONDecodeError" in run.results.get(item=items[0]).error
    assert run.summary["errors_by_kind"] == {"bad_response": 2}
    assert run.summary["answered"] == 3


def test_a_quality_story_past_the_context_is_a_too_long_error_on_that_item_only(bank, run_baseline):
    long_story = " ".join(f"Sentence {i} of a very long story about the drifting ship." for i in range(200))
    (too_long,) = make_items(bank, 1, passage=long_story, prefix="long")
    make_items(bank, 2, prefix="short")
    with FakeTGI(letter_logprobs=SCRIPTED, max_total_tokens=400, max_input_tokens=399) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank)
        assert [r.status for r in generation_requests(tgi)].count(422) == 1  # not retried

    result = run.results.get(item=too_long)
    assert result.error_kind == "too_long"
    assert "must be <= 400" in result.error
    assert run.status == "done" and run.errors == 1 and run.summary["errors_by_kind"] == {"too_long": 1}


def test_overload_is_retried_with_backoff_and_then_succeeds(bank, run_baseline):
    make_items(bank, 2)
    with FakeTGI(letter_logprobs=SCRIPTED, http_status=429, fault_times=3) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank)
        statuses = [r.status for r in generation_requests(tgi)]

    assert statuses == [429, 429, 429, 200, 200]
    assert run.status == "done" and run.errors == 0
    assert run.progress["retries"] == 3


def test_overload_that_outlasts_the_retries_is_recorded_as_busy(bank, run_baseline):
    make_items(bank, 2)
    with FakeTGI(letter_logprobs=SCRIPTED, http_status=429) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank, params={"max_retries": 2})
        assert len(generation_requests(tgi)) == 6  # 1 + 2 retries per item

    assert run.status == "done" and run.errors == 2
    assert set(run.results.values_list("error_kind", flat=True)) == {"busy"}
    assert "after 2 retries" in run.results.first().error


def test_an_endpoint_that_is_down_fails_the_run_without_recording_the_items_and_a_resume_finishes_it(
    bank, run_baseline
):
    make_items(bank, 6)
    with FakeTGI(letter_logprobs=SCRIPTED, down=True) as tgi:
        endpoint = tgi_endpoint(tgi)
        run = run_baseline(endpoint=endpoint, bank=bank, params={"max_retries": 0, "breaker": 3})
        assert run.status == "failed" and "looks down" in run.message and "--resume" in run.message
        assert run.results.count() == 0  # an outage is not the items' fault: nothing recorded

        tgi.configure(down=False)
        prepare_resume(run)
        assert execute(run.pk).outcome == "done"

    run.refresh_from_db()
    assert run.status == "done" and run.done == 6 and run.errors == 0


def test_a_parameter_the_server_refuses_for_every_item_fails_the_run_instead_of_recording_every_item(
    bank, run_baseline
):
    make_items(bank, 8)
    with FakeTGI(letter_logprobs=SCRIPTED) as tgi:
        run = run_baseline(endpoint=tgi_endpoint(tgi), bank=bank, params={"top_n": 6, "breaker": 4})

    assert run.status == "failed" and "refuses the requests" in run.message
    assert "top_n_tokens" in run.message and run.results.count() == 0
