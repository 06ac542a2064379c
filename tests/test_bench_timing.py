"""Tests for vae_edu.bench.median_seconds (call counts only: no timed assertions)."""

import pytest

from vae_edu.bench import median_seconds


def test_median_seconds_calls_warmup_plus_repeats():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9
    assert isinstance(seconds, float) and seconds >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, repeats=0)
