"""Tests for vae_edu.estimate: per-image means and paired differences with standard errors,
against scipy.stats.sem and numpy."""

import numpy as np
import pytest
from scipy import stats

from vae_edu.estimate import mean_estimate, paired_difference


def test_paired_difference_matches_scipy_sem():
    rng = np.random.default_rng(1)
    a = rng.normal(-90.0, 20.0, size=500)
    b = a - 3.0 + rng.normal(0.0, 0.5, size=500)
    got = paired_difference(a, b)
    assert got.mean == pytest.approx(np.mean(a - b), rel=1e-12)
    assert got.std_error == pytest.approx(stats.sem(a - b), rel=1e-12)
    # The shared image-to-image spread cancels: the paired SE is far below the unpaired one.
    assert got.std_error < 0.1 * np.hypot(stats.sem(a), stats.sem(b))


def test_mean_estimate_matches_numpy_and_scipy():
    values = np.random.default_rng(3).normal(-90.0, 20.0, size=250)
    got = mean_estimate(values)
    assert got.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert got.std_error == pytest.approx(stats.sem(values), rel=1e-12)
    assert str(got) == f"{np.mean(values):.2f} +/- {stats.sem(values):.2f}"
    with pytest.raises(
        ValueError, match=r"1-D array of at least 2 per-image values, got shape \(2, 2\)"
    ):
        mean_estimate(np.zeros((2, 2)))


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match=r"a has shape \(3,\) but b has shape \(4,\)"):
        paired_difference(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.array([0.0, np.inf]), np.zeros(2))
