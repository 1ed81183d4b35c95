"""The two-way cluster bootstrap and the paired tests."""

import numpy as np
import pytest

from oversight.analysis.bootstrap import draw_counts, mcnemar_exact, sign_flip_test, two_way_weights
from oversight.analysis.report import build_report
from oversight_dev.synthetic import synthetic_tables


def test_a_resample_draws_each_unit_with_replacement_and_keeps_the_count():
    counts = draw_counts(np.random.default_rng(0), 7, 1000)
    assert counts.shape == (1000, 7)
    assert (counts.sum(1) == 7).all()
    assert counts.mean() == pytest.approx(1, abs=0.05)
    assert (counts == 0).any() and (counts >= 2).any()


def test_items_are_resampled_within_their_strata():
    strata = [np.array([0, 1, 2]), np.array([3, 4])]
    w, c = two_way_weights(5, 200, 4, strata, 5)
    assert (w.sum(1) == 4).all()
    assert (c[:, :3].sum(1) == 3).all() and (c[:, 3:].sum(1) == 2).all()


def interval_of(report, condition=0):
    return report["with_exclusions"]["conditions"][condition]["all"]["accuracy"]["ci95"]


def test_the_same_seed_gives_the_same_interval_twice_and_another_seed_another():
    tables = synthetic_tables(n_participants=12, items_per_condition=20, seed=4)
    first = build_report(tables, seed=11, resamples=300).to_dict()
    second = build_report(tables, seed=11, resamples=300).to_dict()
    other = build_report(tables, seed=12, resamples=300).to_dict()
    assert interval_of(first) == interval_of(second)
    assert (
        build_report(tables, seed=11, resamples=300).to_json() == build_report(tables, seed=11, resamples=300).to_json()
    )
    assert interval_of(first) != interval_of(other)
    assert first["method"]["bootstrap"]["seed"] == 11 and first["method"]["bootstrap"]["resamples"] == 300


def test_the_interval_covers_the_known_truth_on_a_large_synthetic_study():
    # The population mean individual accuracy is exactly 55% unaided and 75% assisted (see synthetic.py).
    tables = synthetic_tables(n_participants=150, items_per_condition=150, seed=1)
    report = build_report(tables, seed=2, resamples=500).to_dict()
    assisted, unaided = report["with_exclusions"]["conditions"]
    lo, hi = assisted["all"]["accuracy"]["ci95"]
    assert lo < 75 < hi and hi - lo < 10
    lo, hi = unaided["all"]["accuracy"]["ci95"]
    assert lo < 55 < hi and hi - lo < 10


@pytest.mark.slow
def test_the_two_way_interval_covers_the_truth_in_most_of_many_synthetic_studies():
    covered = 0
    runs = 40
    for seed in range(runs):
        tables = synthetic_tables(n_participants=10, items_per_condition=30, seed=100 + seed, model_accuracy={})
        lo, hi = interval_of(build_report(tables, seed=seed, resamples=400).to_dict())
        covered += lo < 75 < hi
    # Nominal 95%; the two-way percentile bootstrap is, if anything, conservative. 40 runs: ≥ 34 is a loose bound.
    assert covered >= 34, covered


def test_the_sign_flip_test_is_exact_for_few_items():
    result = sign_flip_test([1, 1, 1], seed=0)
    assert result["exact"] and result["permutations"] == 8
    assert result["p_value"] == pytest.approx(2 / 8)  # +++ and −−− are as extreme as observed
    assert result["mean_difference"] == pytest.approx(100)
    assert sign_flip_test([0.5, -0.5, 0, 0], seed=0)["p_value"] == 1
    assert sign_flip_test([0, 0], seed=0)["p_value"] == 1


def test_the_sign_flip_test_samples_flips_reproducibly_for_many_items():
    diffs = [0.3] * 20 + [-0.1] * 5
    first = sign_flip_test(diffs, seed=3)
    assert not first["exact"] and first["permutations"] == 10_000
    assert first == sign_flip_test(diffs, seed=3)
    assert first["p_value"] < 0.01


def test_the_exact_mcnemar_test_counts_discordant_pairs():
    result = mcnemar_exact([True] * 5 + [True, False], [False] * 5 + [True, False])
    assert (result["first_only_correct"], result["second_only_correct"]) == (5, 0)
    assert result["p_value"] == pytest.approx(2 / 32)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1


def test_the_report_runs_blas_on_one_thread_and_restores_the_setting(monkeypatch):
    from threadpoolctl import threadpool_info

    from oversight.analysis import report

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not a library threadpoolctl can reach")
    during = []
    real_analyse = report.analyse

    def analyse(*args, **kwargs):
        during.append(blas_threads())
        return real_analyse(*args, **kwargs)

    monkeypatch.setattr(report, "analyse", analyse)
    build_report(synthetic_tables(n_participants=6, items_per_condition=4, seed=3), resamples=10)
    assert during and all(threads == [1] * len(before) for threads in during)
    assert blas_threads() == before
