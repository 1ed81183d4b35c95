"""manage.py run_baseline: create and run in this process, print a summary, resume."""

import io

import pytest
from django.core.management import CommandError, call_command

from oversight.baselines.management.commands.run_baseline import ProgressBar
from oversight.baselines.models import BaselineRun
from oversight.baselines.runner import Progress
from oversight.core.models import ModelEndpoint
from tests.baselines.conftest import generation_requests, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated():
    return ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.7, "seed": 1})


def test_it_runs_a_bank_split_and_prints_accuracy_errors_calibration_and_subjects(bank, simulated, capsys):
    make_items(bank, 30, subjects=("physics", "law"), split="val")
    make_items(bank, 5, split="test", prefix="t")
    call_command("run_baseline", "--endpoint", "sim", "--bank", bank.name, "--split", "val", "--method", "zero-shot")

    out = capsys.readouterr().out
    run = BaselineRun.objects.get()
    assert run.status == "done" and run.total == 30 and run.split == "val"
    assert f"Baseline run {run.pk}: zero-shot on bank {bank.name}, split val" in out
    assert f"Accuracy: {run.summary['accuracy']:.1f}% of 30 answered labelled items" in out
    assert "Errors: none" in out
    assert "Calibration error: " in out and "25%: n=" in out
    assert "Accuracy by subject:" in out and "  law " in out and "  physics " in out


def test_it_passes_the_method_parameters_and_caps_concurrency_at_the_endpoints(bank, endpoint, tgi):
    make_items(bank, 5, split="dev", prefix="dev")
    make_items(bank, 2, split="test")
    endpoint.max_concurrency = 4
    endpoint.save()
    call_command(
        "run_baseline",
        "--endpoint",
        endpoint.name,
        "--bank",
        bank.name,
        "--split",
        "test",
        "--method",
        "few-shot",
        "--shots",
        "3",
        "--concurrency",
        "64",
        stdout=io.StringIO(),
    )

    run = BaselineRun.objects.get()
    assert run.params["shots"] == 3 and run.params["concurrency"] == 64
    assert run.progress["concurrency"] == 4
    assert len(generation_requests(tgi)) == 2


def test_it_resumes_a_cancelled_run(bank, endpoint, tgi):
    make_items(bank, 4)
    from oversight.baselines.runner import create_run

    run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
    BaselineRun.objects.filter(pk=run.pk).update(status="cancelled")
    out = io.StringIO()
    call_command("run_baseline", "--resume", str(run.pk), stdout=out)

    run.refresh_from_db()
    assert run.status == "done" and run.done == 4
    assert "Done: 4/4 items; 4 scored now" in out.getvalue()
    with pytest.raises(CommandError, match="already done"):
        call_command("run_baseline", "--resume", str(run.pk), stdout=io.StringIO())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "nope", "--bank", "Unit MMLU"], r"no endpoint named 'nope' \(known: nourl, sim\)"),
        (["--endpoint", "sim"], "give --bank and/or --study"),
        (["--endpoint", "sim", "--bank", "Unit MMLU", "--shots", "5"], "--shots does not apply to zero-shot"),
        (["--endpoint", "sim", "--bank", "Unit MMLU", "--split", "nope"], "no items match"),
        (
            ["--endpoint", "sim", "--bank", "Unit MMLU", "--method", "cot", "--template", "paper-zero-shot"],
            "is for zero-shot, not cot",
        ),
        (["--resume", "999"], "no baseline run 999"),
        (["--endpoint", "nourl", "--bank", "Unit MMLU"], "endpoint 'nourl' has no http\\(s\\) base URL"),
    ],
)
def test_bad_arguments_are_explained(bank, simulated, args, message):
    ModelEndpoint.objects.create(name="nourl", kind="tgi")
    make_items(bank, 2)
    with pytest.raises(CommandError, match=message):
        call_command("run_baseline", *args, stdout=io.StringIO())


def test_the_progress_bar_shows_done_total_rate_eta_and_errors():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    bar(Progress(done=250, total=1000, errors=3, rate=50.0, eta_s=15.0, errors_by_kind={"too_long": 3}))
    bar.close()
    assert stream.getvalue() == "\r[##--------] 250/1000  25.0%     50.0 items/s  ETA 0:15  errors 3\n"


def test_it_runs_the_papers_best_of_n_chain_of_thought_and_names_the_row(bank, simulated, capsys):
    make_items(bank, 3, split="val")
    call_command(
        "run_baseline",
        *("--endpoint", "sim", "--bank", bank.name, "--split", "val", "--method", "cot", "--samples", "4"),
        *("--selector", "best-of-n", "--scorer", "reward", "--scorer-endpoint", "sim"),
    )
    run = BaselineRun.objects.get()
    assert run.status == "done" and run.params["selector"] == "best-of-n" and run.params["samples"] == 4
    assert "in the report: Model (best-of-4 CoT, reward model)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--scorer does not apply to zero-shot"):
        call_command("run_baseline", "--endpoint", "sim", "--bank", bank.name, "--scorer", "reward")
