"""One plan decides the route of a model's forward pass and of its fit step: Sequential.forward and
fit follow it, explain() reports it, and refused models behave the same on both sides."""
from __future__ import annotations

import pytest

import fastmlp
from fastmlp import nn, optim
from fastmlp.nn.program import TrainStep
from fastmlp.nn.plan import Plan, Refusal, native_update, plan_modules, plan_training


def _hooked(model, index, pre=False):
    m = model[index]
    (m.register_forward_pre_hook if pre else m.register_forward_hook)(lambda *a: None)
    return model


class MyReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) * 2.0


# name -> (builder, expected refusal substring for the forward plan or None, for the training plan or None)
CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 4)), None, None),
    "flatten_identity": (lambda: nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(12, 8), nn.Identity(), nn.Tanh(),
                                               nn.Linear(8, 4)), None, None),
    "dropout_after_last": (lambda: nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4), nn.Dropout(0.1)),
                           None, "Dropout after the last Linear"),
    "act_after_last": (lambda: nn.Sequential(nn.Linear(12, 4), nn.Sigmoid()), None, "an activation after the last"),
    "gelu_tanh": (lambda: nn.Sequential(nn.Linear(12, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 4)),
                  "GELU(approximate='tanh')", "GELU(approximate='tanh')"),
    "hook_on_layer_3": (lambda: _hooked(nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 4)), 3),
                        "a forward hook on layer 3", "a forward hook on layer 3"),
    "pre_hook_on_relu": (lambda: _hooked(nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4)), 1, pre=True),
                         "a forward pre-hook on layer 1", "a forward pre-hook on layer 1"),
    "subclassed_activation": (lambda: nn.Sequential(nn.Linear(12, 8), MyReLU(), nn.Linear(8, 4)),
                              "subclass", "subclass"),
    "batchnorm": (lambda: nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 4)),
                  "layer 1 (BatchNorm1d)", "layer 1 (BatchNorm1d)"),
    "inner_flatten": (lambda: nn.Sequential(nn.Linear(12, 8), nn.Flatten(), nn.Linear(8, 4)),
                      "only a leading Flatten", "only a leading Flatten"),
    "dropout_p_one": (lambda: nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Dropout(1.0), nn.Linear(8, 4)),
                      "p must be in [0, 1)", "p must be in [0, 1)"),
    "tied": (lambda: (lambda lin: nn.Sequential(lin, nn.ReLU(), lin))(nn.Linear(8, 8)), "used by two layers",
             "used by two layers"),
    "float64": (lambda: nn.Sequential(nn.Linear(12, 8, dtype=fastmlp.float64), nn.Linear(8, 4, dtype=fastmlp.float64)),
                "float64", "float64"),
}


def _plan_reason(model):
    from fastmlp.nn.plan import plan_program

    p = plan_program(tuple(model))
    return None if p else p.reason


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_names_the_reason(name):
    build, fw_reason, fit_reason = CASES[name]
    model = build()
    text = nn.explain(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    fw, fit = text.split("\n")
    if fw_reason is None:
        assert fw.startswith("forward: one native MLP program call")
    else:
        assert fw.startswith("forward: layer by layer") and fw_reason in fw
    if fit_reason is None:
        assert fit.startswith("fit: each step is one native call")
    else:
        assert fit.startswith("fit: the layer-by-layer loop") and fit_reason in fit


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_fit_follow_the_plan(name):
    build, fw_reason, fit_reason = CASES[name]
    fastmlp.manual_seed(0)
    model = build()
    in_features = next(iter(model.parameters())).shape[1]
    dtype = next(iter(model.parameters())).dtype
    out = model(fastmlp.randn(3, in_features, dtype=dtype))
    assert (type(out.grad_fn).__name__ == "ProgramBackward") == (fw_reason is None)
    assert (_plan_reason(model) is None) == (fw_reason is None)
    step = TrainStep.build(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    assert (step is not None) == (fit_reason is None)
    assert bool(plan_training(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))) == \
        (fit_reason is None)


def test_refusals_of_the_training_step():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    sgd = optim.SGD(model.parameters(), lr=0.1)
    assert "MSELoss" in plan_training(model, nn.MSELoss(), sgd).reason
    assert "reduction='sum'" in plan_training(model, nn.CrossEntropyLoss(reduction="sum"), sgd).reason
    assert "exactly the model's parameters" in plan_training(
        model, nn.CrossEntropyLoss(), optim.SGD(list(model.parameters())[:2], lr=0.1)).reason
    model.eval()
    assert "eval mode" in plan_training(model, nn.CrossEntropyLoss(), sgd).reason
    model.train()
    model[2].weight.requires_grad_(False)
    assert "frozen" in plan_training(model, nn.CrossEntropyLoss(), sgd).reason


def test_update_inside_the_step_for_plain_optimizers_only():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))

    class MySGD(optim.SGD):
        pass

    for opt, update in ((optim.SGD(model.parameters(), lr=0.1), "SGD"), (optim.Adam(model.parameters()), "Adam"),
                        (optim.AdamW(model.parameters()), "AdamW"), (MySGD(model.parameters(), lr=0.1), None)):
        assert isinstance(plan_training(model, nn.CrossEntropyLoss(), opt), Plan)
        assert native_update(opt) == update
    assert "MySGD.step()" in nn.explain(model, nn.CrossEntropyLoss(), MySGD(model.parameters(), lr=0.1))


def test_refusal_is_falsy_and_plan_describes_blocks():
    p = plan_modules(tuple(CASES["mlp"][0]()))
    assert isinstance(p, Plan) and p.describe() == "Linear(12, 8)+ReLU+Dropout(0.2), Linear(8, 4)"
    r = plan_modules(tuple(CASES["batchnorm"][0]()))
    assert isinstance(r, Refusal) and not r


def test_plan_follows_hooks_added_and_removed():
    model = CASES["mlp"][0]()
    x = fastmlp.randn(2, 12)
    assert type(model(x).grad_fn).__name__ == "ProgramBackward"
    handle = model[3].register_forward_hook(lambda m, i, o: None)
    assert type(model(x).grad_fn).__name__ != "ProgramBackward"
    handle.remove()
    assert type(model(x).grad_fn).__name__ == "ProgramBackward"


def test_dropout_p_set_out_of_range_fails_the_same_on_every_route():
    # a setting changed after construction: the program refuses it, and the layer-by-layer path
    # gives the same error in the forward pass and in fit
    from fastmlp.data import DataLoader, TensorDataset
    from fastmlp.train import fit

    messages = []
    for use_fit in (False, True):
        model = CASES["mlp"][0]()
        model[2].p = 1.5
        x, y = fastmlp.randn(8, 12), fastmlp.randint(0, 4, (8,))
        with pytest.raises(ValueError) as e:
            if use_fit:
                fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                    DataLoader(TensorDataset(x, y), batch_size=4), epochs=1, progress=False)
            else:
                model(x)
        messages.append(str(e.value))
    assert messages[0] == messages[1] and "1.5" in messages[0]


def test_explain_env_logs_once_per_model(monkeypatch, capsys):
    monkeypatch.setenv("FASTMLP_EXPLAIN", "1")
    model = CASES["gelu_tanh"][0]()
    for _ in range(3):
        model(fastmlp.randn(2, 12))
    err = capsys.readouterr().err
    assert err.count("forward: layer by layer, because GELU(approximate='tanh')") == 1
    monkeypatch.setenv("FASTMLP_EXPLAIN", "0")
    CASES["mlp"][0]()(fastmlp.randn(2, 12))
    assert capsys.readouterr().err == ""


def test_explain_custom_module_and_argument_check():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    text = nn.explain(Net(), nn.CrossEntropyLoss(), optim.SGD(Net().parameters(), lr=0.1))
    assert "Net.forward runs as written" in text and "not a Sequential" in text
    with pytest.raises(ValueError, match="both loss_fn and optimizer"):
        nn.explain(Net(), nn.CrossEntropyLoss())
