"""A real training run: an MLP on MNIST reaches at least 95% test accuracy in one epoch.

Skipped when the MNIST files are absent (set FASTMLP_DATA to a folder holding them).
"""
from __future__ import annotations

from trainhelpers import require_real_mnist

import fastmlp
from fastmlp import datasets, nn, optim, transforms
from fastmlp.train import evaluate, fit
from fastmlp.utils.data import DataLoader


def test_mlp_reaches_95_percent_on_mnist_in_one_epoch():
    root = require_real_mnist()
    fastmlp.manual_seed(0)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,)),
                             transforms.Flatten()])
    train = datasets.MNIST(root, train=True, transform=tf)
    test = datasets.MNIST(root, train=False, transform=tf)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    criterion = nn.CrossEntropyLoss()
    history = fit(model, criterion, optim.Adam(model.parameters(), lr=1e-3),
                  DataLoader(train, batch_size=64, shuffle=True), epochs=1, progress=False)
    result = evaluate(model, DataLoader(test, batch_size=1000), criterion)
    assert history["train_loss"][0] < 0.5
    assert result.accuracy >= 0.95, result.report()
    assert result.class_total.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
