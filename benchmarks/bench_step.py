"""One training step of seed 001's network (784-64-64-64-10, ReLU, log_softmax + nll_loss,
Adam 1e-3, batch 10), written like seed 001's loop, in fastmlp and in PyTorch (when installed).

    python benchmarks/bench_step.py [--steps 300] [--repeat 7]

Both frameworks run the identical loop body on the same data, alternating, median of
repeats; prints microseconds per step and the ratio, and writes benchmarks/results/step.csv.
"""
from __future__ import annotations

import argparse
import sys
import time

if __package__:
    from . import common
else:  # run as a script from a checkout
    import common

import numpy as np  # noqa: E402  (after common, which sets the thread-pool environment)


def make_step(lib, x_np: np.ndarray, y_np: np.ndarray):
    """Seed 001's model and loop body, for `lib` = fastmlp or torch."""
    nn, F, optim = lib.nn, lib.nn.functional, lib.optim

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(28 * 28, 64)
            self.fc2 = nn.Linear(64, 64)
            self.fc3 = nn.Linear(64, 64)
            self.fc4 = nn.Linear(64, 10)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            x = F.relu(self.fc3(x))
            x = self.fc4(x)
            return F.log_softmax(x, dim=1)

    net = Net()
    optimizer = optim.Adam(net.parameters(), lr=0.001)
    X = lib.from_numpy(x_np)
    y = lib.from_numpy(y_np)

    def step():
        net.zero_grad()
        output = net(X.view(-1, 784))
        loss = F.nll_loss(output, y)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="steps per timed sample")
    p.add_argument("--repeat", type=int, default=7, help="timed samples per framework")
    args = p.parse_args(argv)

    import fastmlp

    torch = common.torch_or_none()
    rng = np.random.default_rng(0)
    x = rng.random((10, 784), dtype=np.float32)
    y = rng.integers(0, 10, 10)
    steps = {"fastmlp": make_step(fastmlp, x, y)}
    if torch is not None:
        torch.set_num_threads(fastmlp.get_num_threads())
        steps["torch"] = make_step(torch, x, y)
    for fn in steps.values():
        for _ in range(50):
            fn()
    samples: dict[str, list] = {k: [] for k in steps}
    for _ in range(args.repeat):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            samples[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: float(np.median(v)) for k, v in samples.items()}
    print(f"training step, 784-64-64-64-10, Adam, batch 10 ({fastmlp.info()['isa']}, "
          f"{fastmlp.get_num_threads()} threads)")
    print(f"fastmlp  {med['fastmlp'] * 1e6:8.1f} us/step")
    if "torch" in med:
        print(f"torch    {med['torch'] * 1e6:8.1f} us/step")
        print(f"fastmlp / torch = {med['fastmlp'] / med['torch']:.3f}  (target <= 0.25)")
    rows = [common.Row("train_step", "784-64-64-64-10 b10", {k: v for k, v in med.items()})]
    print(f"wrote {common.write_csv(rows, 'step')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
