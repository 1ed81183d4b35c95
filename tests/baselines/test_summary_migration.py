"""Migration 0002 rewrites the summaries of finished runs with the report's calibration definition (issue 14.6)."""

import importlib

import pytest
from django.apps import apps

from oversight.analysis.tables import SUMMARY_CONFIDENCE
from oversight.baselines.models import BaselineResult
from tests.baselines.conftest import make_items

pytestmark = pytest.mark.django_db
migration = importlib.import_module("oversight.baselines.migrations.0002_summaries_bin_the_predicted_option")


def test_an_old_summary_is_recomputed_and_a_current_one_left_alone(bank, endpoint, run_baseline):
    make_items(bank, 2)
    old = run_baseline(endpoint=endpoint, bank=bank)
    current = run_baseline(endpoint=endpoint, bank=bank)
    # What a summary looked like before: the maximum probability binned, no count of right answers.
    BaselineResult.objects.filter(run=old).update(predicted=2)  # a vote for a less probable option
    type(old).objects.filter(pk=old.pk).update(summary={"calibration_error": 1.0, "labelled": 2})
    kept = current.summary

    migration.recompute(apps, None)
    old.refresh_from_db()
    current.refresh_from_db()
    assert old.summary["confidence"] == SUMMARY_CONFIDENCE and old.summary["labelled"] == 2
    # Predicted C (scripted at -2.5 of the four letters): its probability, not the maximum, sits in the bins.
    assert [b["n"] for b in old.summary["calibration_bins"]] == [2, 0, 0, 0, 0]
    assert current.summary == kept
