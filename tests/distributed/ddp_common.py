"""The model, data and shares shared by train_job.py (under mpiexec) and test_ddp.py (the
single-process reference)."""
from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp import nn, optim
from fastmlp.utils.data import DistributedSampler

SAMPLES, FEATURES, CLASSES = 64, 20, 4
BATCH = 8  # per process
EPOCHS = 3
WORLD = 2


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, SAMPLES).astype(np.int64)
    return x, y


def model():
    fastmlp.manual_seed(3)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def optimizer(name: str, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "nesterov":  # with weight decay
        return optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    if name == "adam":
        return optim.Adam(params, lr=0.01)
    if name == "adamw":  # decoupled weight decay, and a third state buffer (max_exp_avg_sq)
        return optim.AdamW(params, lr=0.01, weight_decay=0.1, amsgrad=True)
    raise ValueError(name)


def sampler(dataset, rank: int) -> DistributedSampler:
    return DistributedSampler(dataset, num_replicas=WORLD, rank=rank, shuffle=True, seed=11)


def joint_batches(epoch: int) -> list:
    """The batches of doubled size one process sees when it takes, at every step, the batch of
    each rank (rank 0's rows, then rank 1's): what the 2-process run trains on in all."""
    shares = []
    for rank in range(WORLD):
        s = sampler(list(range(SAMPLES)), rank)
        s.set_epoch(epoch)
        shares.append(list(s))
    steps = len(shares[0]) // BATCH
    return [sum((sh[k * BATCH:(k + 1) * BATCH] for sh in shares), []) for k in range(steps)]


def state_of(opt) -> dict:
    """The optimizer's tensor state by parameter index and name (copies)."""
    return {f"{i}.{k}": v.numpy().copy() for i, st in opt.state_dict()["state"].items() for k, v in st.items()
            if k != "step"}


def params_of(m) -> dict:
    return {k: v.numpy().copy() for k, v in m.state_dict().items()}
