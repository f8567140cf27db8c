"""DistributedSampler: PyTorch's shares, padding and epochs (torch.utils.data.DistributedSampler)."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp.utils.data import DataLoader, DistributedSampler, TensorDataset
import fastmlp


@pytest.mark.parametrize("n", [1, 7, 10, 17, 64])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shares_equal_torch(n, replicas, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler

    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        assert len(ours) == len(theirs) and ours.total_size == theirs.total_size
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (64, 4, False), (5, 8, False)])
def test_shuffled_shares_partition_a_permutation_as_torch_does(n, replicas, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler

    data = list(range(n))

    def shares(cls, epoch):
        out = []
        for rank in range(replicas):
            s = cls(data, num_replicas=replicas, rank=rank, shuffle=True, seed=5, drop_last=drop_last)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    for epoch in (0, 1):
        ours, theirs = shares(DistributedSampler, epoch), shares(TorchSampler, epoch)
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        flat = sum(ours, [])
        assert len(flat) == len(sum(theirs, []))
        if drop_last:  # disjoint shares of distinct indices
            assert len(set(flat)) == len(flat) and set(flat) <= set(data)
        else:  # every index somewhere, the padding repeating some
            assert set(flat) == set(data)
    assert shares(DistributedSampler, 0) == shares(DistributedSampler, 0)  # same seed and epoch: same order
    assert shares(DistributedSampler, 0) != shares(DistributedSampler, 1)  # a new epoch: a new order


def test_dataloader_batches_follow_the_share():
    x = fastmlp.tensor(np.arange(20, dtype=np.float32).reshape(10, 2))
    y = fastmlp.tensor(np.arange(10, dtype=np.int64))
    s = DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=1, shuffle=True, seed=3)
    s.set_epoch(2)
    order = list(s)
    seen = [int(v) for _, yb in DataLoader(TensorDataset(x, y), batch_size=2, sampler=s) for v in yb.numpy()]
    assert seen == order


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))
    with pytest.raises(TypeError, match="length"):
        DistributedSampler(iter(range(4)), num_replicas=1, rank=0)
