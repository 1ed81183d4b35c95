"""Acceptance: a synthetic study made by `run_bots` with known accuracies — unaided 0.5, assisted 0.75, the
simulated model 0.6; 20 participants, 100 items — is recovered by the report within its intervals, and the 95%
intervals cover the truth in at least 90% of 50 seeded repetitions.

Through the platform one repetition is 2,000 answers, each shown, selected and submitted through the trial
services (about 8 s here); 50 of them would take 6 to 7 minutes. So (docs/report.md, "How the intervals are checked"):

1. Two repetitions (seeds 0 and 1) go all the way through the platform: `run_bots --in-process` (the bots'
   decisions through the service functions the participant views call, then the database check), a zero-shot
   baseline run on the simulated endpoint at accuracy 0.6, `load_tables` and `build_report` — what
   `sandwich_report` does.
2. Every repetition replays the same decision code on the first run's tables: `bots.decide` with the bots'
   per-item seeds for each answer, and `simulated.believed_option` with the endpoint's seed for each model
   answer. The replay of seeds 0 and 1 must give exactly the platform's numbers, intervals included — so the
   database path neither adds nor loses anything the coverage depends on.
3. The report of each of the 50 replayed repetitions (2,000 bootstrap resamples, the default) is checked
   against the truth.
"""

import io
import random
import statistics
from dataclasses import dataclass, replace

import pytest
from django.core.management import call_command
from django.db import transaction

from oversight.analysis.report import DEFAULT_RESAMPLES, build_report
from oversight.analysis.tables import LIKERT_LEVELS, SCORED, StudyTables
from oversight.assistant.simulated import SimulatedItem, SimulationSettings, believed_option
from oversight.baselines.runner import create_run, execute
from oversight.core.models import Condition, ModelEndpoint, Participant
from oversight.reports.load import load_tables
from oversight_dev.bots import BotConfig, TrialInfo, decide
from tests.factories import make_study

# django_db: it makes pytest-django create the test database, which the module-scoped fixture uses.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

PARTICIPANTS = 20
ITEMS_PER_CONDITION = 50  # disjoint samples: 100 items in all, each answered by all 20 participants
TRUTH = {"unaided": 50.0, "assisted": 75.0, "model": 60.0}  # percent, as the report gives accuracy
ACCURACY = "unaided=0.5,assisted=0.75"
MODEL_ACCURACY = 0.6
REPETITIONS = 50
PLATFORM_SEEDS = (0, 1)
# What the bots' decisions are drawn with besides the accuracy (BotConfig's defaults; no item has a time limit).
BOT = BotConfig(slug="sandwich", participants=PARTICIPANTS)


@dataclass
class PlatformRun:
    tables: StudyTables
    report: dict
    summary: str  # run_bots' output


@dataclass
class Platform:
    runs: dict[int, PlatformRun]
    bot_of: dict[int, dict[int, int]]  # seed → participant id → bot index
    items: dict[int, SimulatedItem]  # item id → what the simulated model knows of it


def run_through_the_platform(study, seed: int) -> tuple[PlatformRun, dict[int, int]]:
    out = io.StringIO()
    call_command(
        "run_bots",
        study.slug,
        "--in-process",
        "--participants",
        str(PARTICIPANTS),
        "--seed",
        str(seed),
        "--accuracy",
        ACCURACY,
        "--messages-per-item",
        "0",
        stdout=out,
    )
    endpoint = study.conditions.get(kind=Condition.Kind.ASSISTED).endpoint
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(simulation={"accuracy": MODEL_ACCURACY, "seed": seed})
    endpoint.refresh_from_db()
    run = create_run(endpoint=endpoint, method="zero-shot", study=study)
    assert execute(run.pk).outcome == "done"
    tables = load_tables(study)
    bots = {
        pk: int(external_id.rsplit("-", 1)[1])
        for pk, external_id in Participant.objects.filter(study=study).values_list("pk", "external_id")
    }
    report = build_report(tables, seed=seed, resamples=DEFAULT_RESAMPLES).to_dict()
    return PlatformRun(tables=tables, report=report, summary=out.getvalue()), bots


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker) -> Platform:
    """The platform runs, computed once; the database is left as it was (everything is rolled back)."""
    runs, bot_of = {}, {}
    with django_db_blocker.unblock(), transaction.atomic():
        study = make_study(slug=BOT.slug, n_items=ITEMS_PER_CONDITION)
        items = {
            item.pk: SimulatedItem(
                item_key=f"{item.bank_id}:{item.external_id}",
                question=item.text,
                options=list(item.options),
                gold_index=item.gold_index,
                passage=None,
            )
            for item in study.tasks.get().bank.items.all()
        }
        for seed in PLATFORM_SEEDS:
            with transaction.atomic():
                runs[seed], bot_of[seed] = run_through_the_platform(study, seed)
                transaction.set_rollback(True)
        transaction.set_rollback(True)
    return Platform(runs=runs, bot_of=bot_of, items=items)


def replay(platform: Platform, seed: int) -> StudyTables:
    """The tables of repetition `seed`, from the first platform run's: every answer and model answer drawn again
    by the same code with this seed's keys (`decide` as `run_bots` calls it; `believed_option` as the simulated
    baseline calls it)."""
    template = platform.runs[PLATFORM_SEEDS[0]].tables
    bot_of = platform.bot_of[PLATFORM_SEEDS[0]]
    accuracy = {"unaided": 0.5, "assisted": 0.75}
    trials = []
    for t in template.trials:
        assert t.role == SCORED  # the study has no practice or attention-check items
        d = decide(
            rng=random.Random(f"{seed}:{bot_of[t.participant_id]}:{t.item_id}"),
            info=TrialInfo(
                item_id=t.item_id,
                gold_index=t.gold,
                n_options=t.n_options,
                is_catch=False,
                time_limit_s=None,
                condition_kind=t.condition_kind,
            ),
            accuracy=accuracy[t.condition_kind],
            timeout_rate=BOT.timeout_rate,
            confidence_levels=[float(v) for v in LIKERT_LEVELS],
            slider=None,
            has_deadline=False,
        )
        trials.append(replace(t, choice=d.choice, confidence=d.confidence, correct=d.choice == t.gold))
    model = SimulationSettings(accuracy=MODEL_ACCURACY, seed=seed)
    baselines = []
    for b in template.baselines:
        item = platform.items[b.item_id]
        predicted = believed_option(item, model)
        # The simulated distribution is not replayed: the model's CE is not checked here, only its accuracy.
        baselines.append(replace(b, predicted=predicted, correct=predicted == item.gold_index, probabilities=None))
    return replace(template, trials=trials, baselines=baselines)


def accuracies(report: dict) -> dict[str, dict]:
    """The three estimates the acceptance names: {"unaided"|"assisted"|"model": {"value", "ci95", …}}."""
    analysis = report["with_exclusions"]
    out = {c["kind"]: c["all"]["accuracy"] for c in analysis["conditions"]}
    (model,) = analysis["baselines"]
    out["model"] = model["all"]["accuracy"]
    return out


def covers(estimate: dict, truth: float) -> bool:
    lo, hi = estimate["ci95"]
    return lo <= truth <= hi


def test_a_bot_study_through_the_platform_recovers_the_known_accuracies(platform):
    run = platform.runs[0]
    assert "check: OK (20 participants, 2000 trials" in run.summary  # the records are what the bots did
    analysis = run.report["with_exclusions"]
    for condition in analysis["conditions"]:
        assert (condition["all"]["n_participants"], condition["all"]["n_items"]) == (20, 50)
        assert condition["all"]["n_answers"] == 1000
    (model,) = analysis["baselines"]
    assert model["method"] == "zero-shot" and model["all"]["n_items"] == 100
    for name, estimate in accuracies(run.report).items():
        lo, hi = estimate["ci95"]
        assert lo <= estimate["value"] <= hi, (name, estimate)
        assert lo <= TRUTH[name] <= hi, (name, estimate)


def test_replaying_the_decisions_gives_exactly_the_platforms_numbers(platform):
    for seed in PLATFORM_SEEDS:
        platform_report = platform.runs[seed].report["with_exclusions"]
        replayed = build_report(replay(platform, seed), seed=seed, resamples=DEFAULT_RESAMPLES).to_dict()
        replayed = replayed["with_exclusions"]
        for got, want in zip(replayed["conditions"], platform_report["conditions"], strict=True):
            for key in ("accuracy", "mean_confidence", "calibration", "vote", "n_answers"):
                assert got["all"][key] == want["all"][key], (seed, want["kind"], key)
            assert got["by_subject"] == want["by_subject"]
        assert replayed["baselines"][0]["all"]["accuracy"] == platform_report["baselines"][0]["all"]["accuracy"]
    # The two seeds are different studies: a replay that ignored the seed would not have matched both.
    assert accuracies(platform.runs[0].report) != accuracies(platform.runs[1].report)


def test_the_intervals_cover_the_truth_in_at_least_90_percent_of_50_seeded_repetitions(platform):
    estimates = {name: [] for name in TRUTH}
    for seed in range(REPETITIONS):
        report = build_report(replay(platform, seed), seed=seed, resamples=DEFAULT_RESAMPLES).to_dict()
        for name, estimate in accuracies(report).items():
            estimates[name].append(estimate)
    for name, truth in TRUTH.items():
        found = estimates[name]
        coverage = sum(covers(e, truth) for e in found) / len(found)
        assert coverage >= 0.9, (name, coverage)
        # And unbiased: the mean of the 50 estimates within 4 of its standard errors of the truth (about 0.9
        # points for the people, 2.8 for the model). With no participant or item effects in the bots, the
        # two-way intervals are conservative here (all 50 cover the humans' truth), so this is the sharper check.
        values = [e["value"] for e in found]
        mean = statistics.fmean(values)
        assert abs(mean - truth) < 4 * statistics.stdev(values) / len(values) ** 0.5, (name, mean)
