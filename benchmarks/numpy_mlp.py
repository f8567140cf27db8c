"""A straightforward NumPy implementation of the benchmark MLPs: the baseline that
``bench_train.py`` compares fastmlp and PyTorch against.

The same computation as the fastmlp/PyTorch training loops — Linear layers with
ReLU, inverted dropout, softmax cross-entropy, backpropagation, SGD or Adam with
PyTorch's update formulas and PyTorch's default initialisation — written the way
a competent NumPy user would: float32 throughout, matrix products through
``@`` (OpenBLAS), in-place updates where they come naturally, no Python loops
over elements.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


class NumpyMLP:
    """784-h1-...-10 ReLU MLP with optional dropout after each hidden layer."""

    def __init__(self, sizes: list[int], dropout: float = 0.0, optimizer: str = "sgd", lr: float = 0.01,
                 seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.dropout = dropout
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # PyTorch's Linear default for weights and biases
            self.W.append(self.rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
            self.b.append(self.rng.uniform(-bound, bound, fan_out).astype(np.float32))
        self.optimizer = optimizer
        self.lr = lr
        self.t = 0
        if optimizer == "adam":
            self.m = [np.zeros_like(p) for p in self.W + self.b]
            self.v = [np.zeros_like(p) for p in self.W + self.b]

    def forward(self, x: np.ndarray, train: bool = True):
        """Logits and the activations/masks the backward pass needs."""
        acts, masks = [x], []
        h = x
        last = len(self.W) - 1
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = h @ W.T
            z += b
            if i == last:
                return z, acts, masks
            h = np.maximum(z, 0, out=z)
            if train and self.dropout > 0:
                keep = (self.rng.random(h.shape, dtype=np.float32) >= self.dropout)
                mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - self.dropout))
                h = h * mask
                masks.append(mask)
            else:
                masks.append(None)
            acts.append(h)
        raise AssertionError("unreachable")

    @staticmethod
    def loss_and_grad(logits: np.ndarray, y: np.ndarray):
        """Mean softmax cross-entropy and its gradient w.r.t. the logits."""
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = logits.shape[0]
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), y]))
        grad = e / s
        grad[np.arange(n), y] -= 1.0
        grad /= n
        return loss, grad

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One training step: forward, loss, backward, update. Returns the loss."""
        logits, acts, masks = self.forward(x, train=True)
        loss, dz = self.loss_and_grad(logits, y)
        gW: list[Optional[np.ndarray]] = [None] * len(self.W)
        gb: list[Optional[np.ndarray]] = [None] * len(self.W)
        for i in range(len(self.W) - 1, -1, -1):
            gW[i] = dz.T @ acts[i]
            gb[i] = dz.sum(axis=0)
            if i == 0:
                break
            dh = dz @ self.W[i]
            if masks[i - 1] is not None:
                dh *= masks[i - 1]
            dh *= acts[i] > 0  # ReLU: the stored activation is positive where the unit was active
            dz = dh
        self._update(gW + gb)
        return loss

    def _update(self, grads: list[np.ndarray]) -> None:
        params = self.W + self.b
        if self.optimizer == "sgd":
            for p, g in zip(params, grads):
                p -= np.float32(self.lr) * g
            return
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        step_size = np.float32(self.lr / (1 - b1 ** self.t))
        bc2_sqrt = np.float32(math.sqrt(1 - b2 ** self.t))
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= np.float32(b1)
            m += np.float32(1 - b1) * g
            v *= np.float32(b2)
            v += np.float32(1 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= bc2_sqrt
            denom += np.float32(eps)
            p -= step_size * (m / denom)

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
        correct = 0
        for i in range(0, len(x), batch):
            logits, _, _ = self.forward(x[i:i + batch], train=False)
            correct += int((logits.argmax(1) == y[i:i + batch]).sum())
        return correct / len(x)
