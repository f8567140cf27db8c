"""Seed 002's worked example: a 1-2-1 sigmoid network with fixed weights, x=1, y=3, MSELoss.

The expected numbers are the ones printed in the tutorial (PyTorch's output), to 4 decimals.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp as torch  # the seed script, with torch swapped for fastmlp


class network(torch.nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden = torch.nn.Linear(input_size, hidden_size)
        self.output = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x):
        x = self.hidden(x)
        x = torch.sigmoid(x)
        x = self.output(x)
        return x


def make_model():
    model = network(1, 2, 1)
    model.state_dict()['hidden.weight'][:] = torch.tensor([[1], [-1]])
    model.state_dict()['hidden.bias'][:] = torch.tensor([1, 2])
    model.state_dict()['output.weight'][:] = torch.tensor([[1, 2]])
    model.state_dict()['output.bias'][:] = torch.tensor([-1])
    x, y = torch.tensor([1.0]), torch.tensor([3.0])
    return model, x, y


def close4(t, expected):
    np.testing.assert_allclose(np.asarray(t.detach().numpy()).ravel(), expected, atol=5e-5)


def test_gradients_match_printed_values():
    model, x, y = make_model()
    assert model.output.bias.grad is None
    criterion = torch.nn.MSELoss()
    loss = criterion(model(x), y)
    loss.backward()
    close4(model.output.bias.grad, [-3.3142])
    close4(model.hidden.bias.grad, [-0.3480, -1.3032])
    close4(model.hidden.weight.grad.squeeze(), [-0.3480, -1.3032])
    close4(model.output.weight.grad.squeeze(), [-2.9191, -2.4229])


def test_one_sgd_step_matches_printed_weights():
    model, x, y = make_model()
    criterion = torch.nn.MSELoss()
    criterion(model(x), y).backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    sd = model.state_dict()
    close4(sd['hidden.weight'], [1.0348, -0.8697])
    close4(sd['hidden.bias'], [1.0348, 2.1303])
    close4(sd['output.weight'], [1.2919, 2.2423])
    close4(sd['output.bias'], [-0.6686])


@pytest.fixture
def stepped():
    model, x, y = make_model()
    criterion = torch.nn.MSELoss()
    criterion(model(x), y).backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    return model, x, y, criterion, optimizer


def test_five_backwards_without_zero_grad_accumulate(stepped):
    model, x, y, criterion, optimizer = stepped
    optimizer.zero_grad()
    printed = [[-0.1991, -0.5976], [-0.3983, -1.1953], [-0.5974, -1.7929], [-0.7966, -2.3906], [-0.9957, -2.9882]]
    for call in range(5):
        loss = criterion(model(x), y)
        loss.backward()
        close4(model.hidden.bias.grad, printed[call])


def test_zero_grad_each_time_keeps_gradient_constant(stepped):
    model, x, y, criterion, optimizer = stepped
    for _ in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        close4(model.hidden.bias.grad, [-0.1991, -0.5976])


def test_state_dict_prints_like_pytorch():
    model, _, _ = make_model()
    assert repr(model.state_dict()["hidden.weight"]) == "tensor([[ 1.],\n        [-1.]])"
    assert repr(model.state_dict()["output.bias"]) == "tensor([-1.])"
