"""Train/validation split: stratified by type, deterministic, every type in validation."""

import pytest

from preprocessing.errors import NucleiError
from preprocessing.split import stratified_split

IDS = [f"id{k:03d}" for k in range(50)]
TYPES = ["fluorescence"] * 35 + ["histology"] * 10 + ["brightfield"] * 5


def test_every_type_present_in_validation_in_proportion():
    train, val = stratified_split(IDS, TYPES, val_fraction=0.2, seed=3)
    type_of = dict(zip(IDS, TYPES))
    counts = {t: sum(type_of[i] == t for i in val) for t in set(TYPES)}
    assert counts == {"fluorescence": 7, "histology": 2, "brightfield": 1}


def test_split_is_a_partition():
    train, val = stratified_split(IDS, TYPES, val_fraction=0.2, seed=3)
    assert set(train) | set(val) == set(IDS)
    assert not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)


def test_split_is_deterministic_and_ignores_input_order():
    once = stratified_split(IDS, TYPES, seed=5)
    reversed_input = stratified_split(IDS[::-1], TYPES[::-1], seed=5)
    assert once == stratified_split(IDS, TYPES, seed=5)
    assert once == reversed_input
    assert once != stratified_split(IDS, TYPES, seed=6)


def test_small_type_still_gets_one_validation_image():
    ids, types = ["a", "b", "c", "d", "e"], ["fluorescence"] * 3 + ["histology"] * 2
    train, val = stratified_split(ids, types, val_fraction=0.1, seed=0)
    assert {"histology", "fluorescence"} == {dict(zip(ids, types))[i] for i in val}
    assert len(train) == 3


def test_bad_arguments_raise():
    with pytest.raises(NucleiError):
        stratified_split(IDS, TYPES, val_fraction=1.0)
    with pytest.raises(NucleiError):
        stratified_split(IDS, TYPES[:-1])
