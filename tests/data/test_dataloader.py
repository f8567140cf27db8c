"""DataLoader, datasets and collation: PyTorch's argument checks and batches, the vectorised path,
clear errors for bad samples (worker processes: test_dataloader_workers.py)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import fastmlp
import fastmlp.data
import fastmlp.utils.data
from fastmlp.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, SequentialSampler,
                                Subset, SubsetRandomSampler, TensorDataset, default_collate, random_split)


def arrays(n=23, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 5, size=n).astype(np.int64)


class ListDataset(Dataset):
    """A per-sample dataset (no __getbatch__) that counts __getitem__ calls."""

    def __init__(self, samples):
        self.samples = samples
        self.calls = 0

    def __getitem__(self, i):
        self.calls += 1
        return self.samples[i]

    def __len__(self):
        return len(self.samples)


# ---- the fastmlp.data alias ---------------------------------------------------------------------
def test_fastmlp_data_is_fastmlp_utils_data():
    assert fastmlp.data is fastmlp.utils.data
    from fastmlp.data import DataLoader as D1
    from fastmlp.data.sampler import SubsetRandomSampler as S1
    from fastmlp.utils.data.sampler import SubsetRandomSampler as S2

    assert D1 is DataLoader and S1 is S2


# ---- argument checks (PyTorch's) ------------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, -1])
def test_batch_size_must_be_positive(bs):
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        DataLoader(TensorDataset(*arrays()), batch_size=bs)


def test_shuffle_with_sampler_is_an_error():
    ds = TensorDataset(*arrays())
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)


@pytest.mark.parametrize("kw", [dict(batch_size=4), dict(shuffle=True), dict(drop_last=True),
                                dict(sampler=[0, 1])])
def test_batch_sampler_excludes_other_batching_options(kw):
    ds = TensorDataset(*arrays())
    bsamp = BatchSampler(SequentialSampler(ds), 2, False)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=bsamp, **kw)


def test_other_argument_checks():
    ds = TensorDataset(*arrays())
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="batch_size=None option disables auto-batching"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="timeout"):
        DataLoader(ds, timeout=-1)


# ---- batches from array-backed datasets -----------------------------------------------------------
def test_sequential_batches_equal_numpy_slices_and_len():
    x, y = arrays()
    dl = DataLoader(TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y)), batch_size=5)
    assert len(dl) == 5
    batches = list(dl)
    assert len(batches) == 5 and [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, fastmlp.Tensor) and xb.dtype == fastmlp.float32 and yb.dtype == fastmlp.int64
        np.testing.assert_array_equal(xb.numpy(), x[5 * k:5 * k + 5])
        np.testing.assert_array_equal(yb.numpy(), y[5 * k:5 * k + 5])


def test_drop_last():
    dl = DataLoader(TensorDataset(*arrays()), batch_size=5, drop_last=True)
    assert len(dl) == 4 and [len(b[0]) for b in dl] == [5, 5, 5, 5]


def test_shuffle_visits_every_sample_once_and_is_reproducible():
    x, y = arrays(n=40)
    ids = np.arange(40)
    dl = DataLoader(TensorDataset(x, ids), batch_size=7, shuffle=True)
    fastmlp.manual_seed(5)
    first = np.concatenate([b[1].numpy() for b in dl])
    second = np.concatenate([b[1].numpy() for b in dl])
    assert sorted(first) == list(range(40)) and not np.array_equal(first, second)
    fastmlp.manual_seed(5)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in dl]), first)
    xb, idb = next(iter(dl))
    np.testing.assert_array_equal(xb.numpy(), x[idb.numpy()])


def test_shuffle_with_generator_argument():
    ids = np.arange(30)
    runs = []
    for _ in range(2):
        g = fastmlp.Generator().manual_seed(42)
        runs.append(np.concatenate([b[0].numpy() for b in DataLoader(TensorDataset(ids), 4, shuffle=True,
                                                                       generator=g)]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_subset_random_sampler_split_like_the_tutorial():
    x, y = arrays(n=50)
    ds = TensorDataset(x, np.arange(50))
    idx = list(range(50))
    np.random.default_rng(0).shuffle(idx)
    train_idx, valid_idx = idx[10:], idx[:10]
    train = DataLoader(ds, batch_size=4, sampler=SubsetRandomSampler(train_idx))
    valid = DataLoader(ds, batch_size=4, sampler=SubsetRandomSampler(valid_idx))
    assert len(train) == 10 and len(valid) == 3
    seen_train = np.concatenate([b[1].numpy() for b in train])
    seen_valid = np.concatenate([b[1].numpy() for b in valid])
    assert sorted(seen_train) == sorted(train_idx) and sorted(seen_valid) == sorted(valid_idx)


def test_array_backed_batches_use_one_gather_not_per_sample_calls(monkeypatch):
    x, y = arrays(n=20)
    ds = TensorDataset(x, y)
    calls = collections.Counter()
    monkeypatch.setattr(TensorDataset, "__getitem__", lambda self, i: calls.update(["item"]))
    original = TensorDataset.__getbatch__

    def spy(self, idx):
        calls.update(["batch"])
        assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
        return original(self, idx)

    monkeypatch.setattr(TensorDataset, "__getbatch__", spy)
    batches = list(DataLoader(ds, batch_size=6, shuffle=True))
    assert calls == {"batch": 4}
    assert sum(len(b[0]) for b in batches) == 20


def test_subset_of_array_dataset_is_gathered_through_it():
    x, y = arrays(n=20)
    sub = Subset(TensorDataset(x, y), [3, 1, 4, 15, 9, 2])
    (xb, yb), = list(DataLoader(sub, batch_size=6))
    np.testing.assert_array_equal(xb.numpy(), x[[3, 1, 4, 15, 9, 2]])
    np.testing.assert_array_equal(yb.numpy(), y[[3, 1, 4, 15, 9, 2]])
    assert len(sub) == 6
    np.testing.assert_array_equal(sub[2][0].numpy(), x[4])


def test_vectorised_and_per_sample_paths_agree():
    x, y = arrays(n=17)
    fast = list(DataLoader(TensorDataset(x, y), batch_size=4))
    slow = list(DataLoader(ListDataset([(fastmlp.from_numpy(x[i]), int(y[i])) for i in range(17)]), batch_size=4))
    for (a, b), (c, d) in zip(fast, slow):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())
        assert b.dtype == d.dtype == fastmlp.int64


class Doubled(TensorDataset):
    """A TensorDataset whose samples are changed by an overridden __getitem__ (and no batch method)."""

    calls = 0

    def __getitem__(self, index):
        Doubled.calls += 1
        x, y = super().__getitem__(index)
        return x * 2, y + 100


def test_overridden_getitem_of_a_tensor_dataset_is_used():
    x, y = arrays(n=10)
    Doubled.calls = 0
    xb, yb = next(iter(DataLoader(Doubled(x, y), batch_size=4)))
    np.testing.assert_array_equal(xb.numpy(), 2 * x[:4])
    np.testing.assert_array_equal(yb.numpy(), y[:4] + 100)
    assert Doubled.calls == 4


def test_overridden_getitem_below_a_subset_is_used():
    x, y = arrays(n=10)
    sub = Subset(Doubled(x, y), [7, 2, 5])
    (xb, yb), = list(DataLoader(sub, batch_size=3))
    np.testing.assert_array_equal(xb.numpy(), 2 * x[[7, 2, 5]])
    np.testing.assert_array_equal(yb.numpy(), y[[7, 2, 5]] + 100)
    np.testing.assert_array_equal(sub.__getbatch__(np.array([1]))[1].numpy(), [y[2] + 100])


def test_overridden_getitem_of_a_subset_is_used():
    class Shifted(Subset):
        def __getitem__(self, idx):
            x, y = super().__getitem__(idx)
            return x, y + 1

    x, y = arrays(n=10)
    (xb, yb), = list(DataLoader(Shifted(TensorDataset(x, y), [4, 0]), batch_size=2))
    np.testing.assert_array_equal(yb.numpy(), y[[4, 0]] + 1)


def test_overridden_getitems_of_a_tensor_dataset_is_used():
    class Reversed(TensorDataset):
        def __getitems__(self, keys):
            return [self[k] for k in reversed(keys)]

    x, y = arrays(n=6)
    xb, yb = next(iter(DataLoader(Reversed(x, y), batch_size=3)))
    np.testing.assert_array_equal(yb.numpy(), y[[2, 1, 0]])


def test_subclass_with_its_own_batch_method_keeps_the_vectorised_path():
    class Negated(TensorDataset):
        def __getitem__(self, index):
            raise AssertionError("the batch method should be used")

        def __getbatch__(self, indices):
            x, y = super().__getbatch__(indices)
            return -x, y

    class Plain(TensorDataset):
        pass

    x, y = arrays(n=8)
    xb, _ = next(iter(DataLoader(Negated(x, y), batch_size=8)))
    np.testing.assert_array_equal(xb.numpy(), -x)
    assert fastmlp.utils.data.dataset.batch_fn(Plain(x, y)) is not None
    assert fastmlp.utils.data.dataset.batch_fn(Doubled(x, y)) is None


def test_tensor_dataset_checks():
    with pytest.raises(ValueError, match=r"Size mismatch between tensors.*tensor 0 has 5 rows, tensor 1 has 4"):
        TensorDataset(fastmlp.zeros(5, 2), fastmlp.zeros(4))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()


# ---- default_collate ----------------------------------------------------------------------------
def test_default_collate_types_follow_pytorch():
    batch = default_collate([(1, 0.5, True, "a", np.array([1, 2], dtype=np.int32)),
                             (2, 1.5, False, "b", np.array([3, 4], dtype=np.int32))])
    ints, floats, bools, strs, arrs = batch
    assert isinstance(batch, list)  # PyTorch answers tuple samples with a list
    assert ints.dtype == fastmlp.int64 and ints.tolist() == [1, 2]
    assert floats.dtype == fastmlp.float64 and floats.tolist() == [0.5, 1.5]
    assert bools.dtype == fastmlp.bool and bools.tolist() == [True, False]
    assert strs == ["a", "b"]
    assert arrs.dtype == fastmlp.int32 and arrs.tolist() == [[1, 2], [3, 4]]


def test_default_collate_matches_torch():
    torch = pytest.importorskip("torch")
    samples = [{"x": np.full((2, 3), i, dtype=np.float32), "y": i, "w": [float(i), 2.0 * i]} for i in range(4)]
    ours = default_collate(samples)
    theirs = torch.utils.data.default_collate(samples)
    assert set(ours) == set(theirs)
    np.testing.assert_array_equal(ours["x"].numpy(), theirs["x"].numpy())
    assert str(theirs["y"].dtype) == "torch.int64" and ours["y"].dtype == fastmlp.int64
    np.testing.assert_array_equal(ours["y"].numpy(), theirs["y"].numpy())
    assert isinstance(ours["w"], list) and len(ours["w"]) == len(theirs["w"]) == 2
    for a, b in zip(ours["w"], theirs["w"]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.dtype == fastmlp.float64 and str(b.dtype) == "torch.float64"


def test_named_tuples_keep_their_type():
    Pair = collections.namedtuple("Pair", "a b")
    out = default_collate([Pair(1, 2.0), Pair(3, 4.0)])
    assert type(out) is Pair and out.a.tolist() == [1, 3] and out.b.tolist() == [2.0, 4.0]


def test_mismatched_shapes_name_the_sample_and_the_shapes():
    samples = [(fastmlp.zeros(1, 28, 28), 0)] * 3 + [(fastmlp.zeros(1, 28, 27), 1)]
    dl = DataLoader(ListDataset(samples), batch_size=4)
    with pytest.raises(ValueError, match=r"sample 3 of the batch \(dataset index 3\) has element 0 of shape "
                                         r"\[1, 28, 27\] but sample 0 of the batch \(dataset index 0\) has shape "
                                         r"\[1, 28, 28\]"):
        next(iter(dl))


def test_mismatched_shapes_in_a_dict_name_the_key():
    with pytest.raises(ValueError, match=r"sample 1 of the batch has key 'img' of shape \[3\]"):
        default_collate([{"img": np.zeros(2)}, {"img": np.zeros(3)}])


def test_collate_of_arrays_and_tensors_matches_numpy_and_names_dataset_indices():
    arrays = [np.random.default_rng(k).standard_normal((2, 3)).astype(np.float32) for k in range(6)]
    for batch in ([fastmlp.from_numpy(a) for a in arrays], arrays):
        out = default_collate(batch)
        assert isinstance(out, fastmlp.Tensor) and out.dtype == fastmlp.float32
        np.testing.assert_array_equal(out.numpy(), np.stack(arrays))
    bad = [fastmlp.from_numpy(a) for a in arrays[:3]] + [fastmlp.ones(3, 2)]
    with pytest.raises(ValueError, match=r"sample 3 of the batch has a tensor of shape \[3, 2\] but sample 0 of the "
                                         r"batch has shape \[2, 3\]"):
        default_collate(bad)
    with pytest.raises(TypeError, match="sample 1 of the batch is a int where sample 0 of the batch is a Tensor"):
        default_collate([fastmlp.ones(2), 3])
def test_list_and_tuple_samples_collate_field_by_field_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal(4).astype(np.float32) for _ in range(5)]
    for make in (tuple, list):
        ours = default_collate([make((fastmlp.from_numpy(r), k)) for k, r in enumerate(rows)])
        theirs = torch.utils.data.default_collate([make((torch.from_numpy(r), k)) for k, r in enumerate(rows)])
        assert type(ours) is type(theirs) is list and len(ours) == len(theirs) == 2  # a list for tuples too
        np.testing.assert_array_equal(ours[0].numpy(), theirs[0].numpy())
        assert ours[1].dtype == fastmlp.int64 and ours[1].tolist() == theirs[1].tolist()
    mixed = [(fastmlp.ones(2), 0), [fastmlp.ones(2), 1]]  # a tuple and a list: both sequences, as in PyTorch
    out = default_collate(mixed)
    assert type(out) is list and out[1].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"sample 1 of the batch has 3 elements but sample 0 of the batch has 2"):
        default_collate([(fastmlp.ones(2), 0), (fastmlp.ones(2), 1, 2)])


def test_samples_with_different_lengths():
    with pytest.raises(ValueError, match="same number of elements"):
        default_collate([(1, 2), (1, 2, 3)])


def test_uncollatable_type():
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


def test_custom_collate_fn_gets_the_list_of_samples():
    ds = ListDataset([(i, i * i) for i in range(5)])
    dl = DataLoader(ds, batch_size=2, collate_fn=lambda b: [s[1] for s in b])
    assert list(dl) == [[0, 1], [4, 9], [16]]


def test_custom_collate_fn_disables_the_vectorised_path():
    x, y = arrays(n=6)
    dl = DataLoader(TensorDataset(x, y), batch_size=3, collate_fn=lambda b: len(b))
    assert list(dl) == [3, 3]


def test_batch_size_none_yields_converted_samples():
    ds = ListDataset([np.arange(3) * i for i in range(4)])
    out = list(DataLoader(ds, batch_size=None))
    assert len(out) == 4 and all(isinstance(t, fastmlp.Tensor) for t in out)
    assert out[2].tolist() == [0, 2, 4]


def test_custom_batch_sampler_lists():
    x, y = arrays(n=10)
    dl = DataLoader(TensorDataset(x, y), batch_sampler=[[9, 0], [4, 4, 1]])
    b1, b2 = list(dl)
    np.testing.assert_array_equal(b1[0].numpy(), x[[9, 0]])
    np.testing.assert_array_equal(b2[1].numpy(), y[[4, 4, 1]])
    assert len(dl) == 2


def test_dict_keyed_dataset_with_custom_sampler():
    class Keyed(Dataset):
        data = {"a": 1.0, "b": 2.0, "c": 3.0}

        def __getitem__(self, key):
            return self.data[key]

        def __len__(self):
            return 3

    dl = DataLoader(Keyed(), batch_size=2, sampler=["c", "a", "b"])
    assert [b.tolist() for b in dl] == [[3.0, 1.0], [2.0]]


def test_pytorch_getitems_protocol_is_used():
    class Many(ListDataset):
        def __getitems__(self, keys):
            self.asked = getattr(self, "asked", []) + [list(keys)]
            return [self.samples[k] for k in keys]

    ds = Many([(float(i), i) for i in range(5)])
    out = list(DataLoader(ds, batch_size=3))
    assert ds.asked == [[0, 1, 2], [3, 4]] and ds.calls == 0
    assert out[1][0].tolist() == [3.0, 4.0] and out[1][1].tolist() == [3, 4]


# ---- iteration protocol ---------------------------------------------------------------------------
def test_iterator_supports_next_method_and_len():
    dl = DataLoader(TensorDataset(*arrays(n=9)), batch_size=4)
    it = iter(dl)
    assert len(it) == 3
    a = it.next()
    b = next(it)
    assert len(a[0]) == 4 and len(b[0]) == 4


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(), shuffle=True)


def test_empty_dataset_gives_no_batches():
    dl = DataLoader(TensorDataset(fastmlp.zeros(0, 3)), batch_size=4)
    assert len(dl) == 0 and list(dl) == []


# ---- Subset, ConcatDataset, random_split ------------------------------------------------------------
def test_random_split_lengths_and_fractions():
    ds = TensorDataset(np.arange(10))
    a, b = random_split(ds, [7, 3], generator=fastmlp.Generator().manual_seed(0))
    assert len(a) == 7 and len(b) == 3
    assert sorted(a.indices + b.indices) == list(range(10))
    c, d, e = random_split(ds, [0.5, 0.3, 0.2])
    assert [len(c), len(d), len(e)] == [5, 3, 2]
    f, g = random_split(range(11), [0.5, 0.5])
    assert [len(f), len(g)] == [6, 5]


def test_random_split_is_reproducible():
    ds = TensorDataset(np.arange(20))
    s1 = random_split(ds, [0.8, 0.2], generator=fastmlp.Generator().manual_seed(4))
    s2 = random_split(ds, [0.8, 0.2], generator=fastmlp.Generator().manual_seed(4))
    assert s1[1].indices == s2[1].indices


def test_random_split_errors():
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset"):
        random_split(range(10), [3, 3])
    with pytest.raises(ValueError, match="non-negative integers or fractions"):
        random_split(range(10), [12, -2])


def test_concat_dataset():
    ds = ConcatDataset([TensorDataset(np.arange(3)), TensorDataset(np.arange(10, 14))])
    assert len(ds) == 7
    assert [int(ds[i][0]) for i in range(7)] == [0, 1, 2, 10, 11, 12, 13]
    assert int(ds[-1][0]) == 13
    assert [b[0].tolist() for b in DataLoader(ds, batch_size=4)] == [[0, 1, 2, 10], [11, 12, 13]]
    with pytest.raises(IndexError):
        ds[7]
