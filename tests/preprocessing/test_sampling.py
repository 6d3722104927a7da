"""Balanced sampling: sqrt rule, external weight, seeded sampler."""

import numpy as np
import pytest

from preprocessing.errors import NucleiError
from preprocessing.sampling import BalancedSampler, sampling_weights


def test_sqrt_rule_hand_computed():
    # 4 fluorescence (class weight 2), 1 histology (class weight 1), total 3
    weights = sampling_weights(["fluorescence"] * 4 + ["histology"])
    np.testing.assert_allclose(weights, [0.5 / 3] * 4 + [1 / 3])
    assert weights.dtype == np.float64


def test_class_totals_follow_sqrt_of_counts():
    types = ["a"] * 16 + ["b"] * 9 + ["c"] * 1
    weights = sampling_weights(types)
    totals = {t: weights[np.array(types) == t].sum() for t in "abc"}
    np.testing.assert_allclose([totals["a"], totals["b"], totals["c"]], np.array([4, 3, 1]) / 8)
    assert weights.sum() == pytest.approx(1.0)


def test_external_group_weighs_as_much_as_smallest_class():
    types = ["fluorescence"] * 9 + ["histology"] * 4 + ["fluorescence"] * 2
    external = [False] * 13 + [True] * 2
    weights = sampling_weights(types, external)
    # classes: sqrt(9) = 3, sqrt(4) = 2; external group gets min = 2, total 7
    np.testing.assert_allclose(weights[:9], 3 / 9 / 7)
    np.testing.assert_allclose(weights[9:13], 2 / 4 / 7)
    np.testing.assert_allclose(weights[13:], 2 / 2 / 7)
    assert weights.sum() == pytest.approx(1.0)


def test_only_external_data_is_uniform():
    np.testing.assert_allclose(sampling_weights(["a", "b", "b"], [True] * 3), [1 / 3] * 3)


def test_bad_inputs_raise():
    with pytest.raises(NucleiError):
        sampling_weights([])
    with pytest.raises(NucleiError):
        sampling_weights(["a", "b"], [True])


def test_sampler_is_reproducible_and_matches_weights():
    types = ["fluorescence"] * 30 + ["brightfield"] * 5 + ["histology"] * 10
    first = BalancedSampler(types, seed=11).sample(20000)
    again = BalancedSampler(types, seed=11).sample(20000)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, BalancedSampler(types, seed=12).sample(20000))
    frequency = np.bincount(first, minlength=len(types)) / len(first)
    np.testing.assert_allclose(frequency, sampling_weights(types), atol=0.006)
    # per class: sqrt(30) : sqrt(5) : sqrt(10)
    expected = np.sqrt([30, 5, 10]) / np.sqrt([30, 5, 10]).sum()
    observed = [frequency[:30].sum(), frequency[30:35].sum(), frequency[35:].sum()]
    np.testing.assert_allclose(observed, expected, atol=0.015)
