"""The simulated endpoint answers baselines without HTTP: plausible, deterministic, as accurate as configured."""

import pytest

from oversight.assistant.simulated import SimulatedItem, SimulationSettings, believed_option
from oversight.banks.models import Bank
from oversight.core.models import ModelEndpoint
from tests.baselines.conftest import make_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated():
    return ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"accuracy": 0.7, "seed": 11})


def test_its_accuracy_is_close_to_the_configured_accuracy(simulated, run_baseline):
    bank = Bank.objects.create(name="big")
    make_items(bank, 600, subjects=("a", "b", "c"))
    run = run_baseline(endpoint=simulated, bank=bank)

    assert run.status == "done" and run.errors == 0
    # 600 draws at p = 0.7: the standard error is 1.9 points; the seed makes this exact and stable.
    assert 64 <= run.summary["accuracy"] <= 76


def test_it_predicts_the_option_the_simulated_assistant_believes_with_a_plausible_distribution(simulated, run_baseline):
    bank = Bank.objects.create(name="b")
    items = make_items(bank, 40)
    run = run_baseline(endpoint=simulated, bank=bank)

    settings = SimulationSettings.from_dict(simulated.simulation)
    for item in items:
        result = run.results.get(item=item)
        belief = believed_option(
            SimulatedItem(
                item_key=f"{bank.pk}:{item.external_id}",
                question=item.text,
                options=item.options,
                gold_index=item.gold_index,
                passage=None,
            ),
            settings,
        )
        assert result.predicted == belief
        assert sum(result.probabilities) == pytest.approx(1.0)
        assert 0.25 < max(result.probabilities) < 1.0 and min(result.probabilities) > 0
    confident_right = [max(r.probabilities) for r in run.results.filter(correct=True)]
    confident_wrong = [max(r.probabilities) for r in run.results.filter(correct=False)]
    assert sum(confident_right) / len(confident_right) > sum(confident_wrong) / len(confident_wrong)


def test_it_is_deterministic(simulated, run_baseline):
    bank = Bank.objects.create(name="b")
    make_items(bank, 20)
    first = run_baseline(endpoint=simulated, bank=bank)
    second = run_baseline(endpoint=simulated, bank=bank)

    assert list(first.results.order_by("item").values_list("probabilities", flat=True)) == list(
        second.results.order_by("item").values_list("probabilities", flat=True)
    )
