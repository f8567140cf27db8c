"""Samplers: the orders they produce, their lengths, argument checks and reproducibility."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp.utils.data import (BatchSampler, RandomSampler, SequentialSampler, SubsetRandomSampler,
                                WeightedRandomSampler)


def test_sequential():
    s = SequentialSampler(range(5))
    assert list(s) == [0, 1, 2, 3, 4] and len(s) == 5
    assert all(type(i) is int for i in s)


def test_random_is_a_permutation_of_python_ints():
    s = RandomSampler(range(100))
    order = list(s)
    assert sorted(order) == list(range(100)) and order != list(range(100))
    assert all(type(i) is int for i in order) and len(s) == 100


def test_random_is_reproducible_with_manual_seed_and_differs_between_epochs():
    s = RandomSampler(range(50))
    fastmlp.manual_seed(3)
    first, second = list(s), list(s)
    fastmlp.manual_seed(3)
    assert list(s) == first and list(s) == second
    assert first != second


def test_random_with_its_own_generator_ignores_the_default():
    g1 = fastmlp.Generator().manual_seed(11)
    a = list(RandomSampler(range(30), generator=g1))
    fastmlp.manual_seed(999)
    g2 = fastmlp.Generator().manual_seed(11)
    assert list(RandomSampler(range(30), generator=g2)) == a


def test_random_num_samples_beyond_length_concatenates_permutations():
    s = RandomSampler(range(4), num_samples=10)
    order = list(s)
    assert len(order) == 10 == len(s)
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:8]) == [0, 1, 2, 3]
    assert set(order[8:]) <= {0, 1, 2, 3} and len(set(order[8:])) == 2


def test_random_with_replacement():
    s = RandomSampler(range(3), replacement=True, num_samples=300)
    order = list(s)
    assert len(order) == 300 and set(order) == {0, 1, 2}


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_random_num_samples_checked(bad):
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(range(3), num_samples=bad)


def test_random_replacement_must_be_bool():
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(range(3), replacement=1)


def test_random_on_empty_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="empty dataset"):
        RandomSampler([])


def test_subset_random():
    idx = [5, 9, 2, 100, 7]
    s = SubsetRandomSampler(idx)
    assert sorted(s) == sorted(idx) and len(s) == 5
    fastmlp.manual_seed(0)
    orders = {tuple(s) for _ in range(20)}
    assert len(orders) > 1
    fastmlp.manual_seed(0)
    again = {tuple(s) for _ in range(20)}
    assert orders == again


def test_subset_random_rejects_non_integers():
    with pytest.raises(TypeError, match="integers"):
        SubsetRandomSampler([0.5, 1.5])


def test_weighted_never_draws_zero_weight():
    s = WeightedRandomSampler([0.0, 1.0, 3.0], num_samples=400)
    counts = np.bincount(list(s), minlength=3)
    assert counts[0] == 0 and counts[2] > counts[1] > 0


def test_weighted_without_replacement_needs_enough_weights():
    assert sorted(WeightedRandomSampler([1, 1, 1], 3, replacement=False)) == [0, 1, 2]
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler([1, 0, 1], 3, replacement=False)


def test_batch_sampler_keeps_or_drops_the_last_batch():
    b = BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=False)
    assert list(b) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] and len(b) == 4
    b = BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=True)
    assert list(b) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and len(b) == 3


def test_batch_sampler_over_a_plain_iterable():
    b = BatchSampler([4, 3, 2, 1, 0], batch_size=2, drop_last=False)
    assert list(b) == [[4, 3], [2, 1], [0]] and len(b) == 3


def test_batch_sampler_over_random_covers_everything_once():
    b = BatchSampler(RandomSampler(range(23)), batch_size=5, drop_last=False)
    batches = list(b)
    assert [len(x) for x in batches] == [5, 5, 5, 5, 3]
    assert sorted(i for x in batches for i in x) == list(range(23))


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, None])
def test_batch_sampler_batch_size_checked(bad):
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(range(3), batch_size=bad, drop_last=False)


def test_batch_sampler_drop_last_checked():
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(range(3), batch_size=1, drop_last=1)


def test_subclass_overriding_iter_is_respected():
    class Reversed(SequentialSampler):
        def __iter__(self):
            return iter(reversed(range(len(self.data_source))))

    b = BatchSampler(Reversed(range(5)), batch_size=2, drop_last=False)
    assert list(b) == [[4, 3], [2, 1], [0]]
