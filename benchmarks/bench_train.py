"""Training benchmark: one MNIST epoch per configuration in fastmlp (the seed-style loop and
``fastmlp.train.fit``), in plain NumPy (benchmarks/numpy_mlp.py) and in PyTorch when installed.

    python benchmarks/bench_train.py [--configs seed-001,mid] [--repeat 3] [--data DIR] [--device cuda]

Every implementation trains the same network with the same optimizer and batch size
from a fresh initialisation for one epoch over the 60,000 training images, then
is scored on the 10,000 test images. Runs alternate between the implementations
(their order rotating from one repeat to the next), and the table gives the median
epoch time over the repeats, samples per second, median test accuracy, the epoch
time as a fraction of PyTorch's and of NumPy's, and the rate of useful arithmetic
(GFLOP/s of the forward and backward matrix products). It writes
benchmarks/results/train.csv and, with matplotlib, train.png.

The PyTorch rows read MNIST from tensors in memory through a TensorDataset and
torch.utils.data.DataLoader (the tutorials' torchvision pipeline decodes images
one by one and would be slower still).

With ``--device cuda`` (or ``cuda:N``) the same configurations train on the GPU:
fastmlp's ``fit`` and the tutorial loop (each batch moved with ``.to(device)``)
against the same loop in PyTorch on CUDA, the clock stopped after a device
synchronisation; it writes train_cuda.csv. Without a usable GPU it exits with a
message saying why (status 2); without a CUDA build of PyTorch the torch row is
left out, with a note.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

if __package__:
    from . import common
    from .numpy_mlp import NumpyMLP
else:  # run as a script from a checkout
    import common
    from numpy_mlp import NumpyMLP

import numpy as np  # noqa: E402  (after common, which sets the thread-pool environment)

CONFIGS = {
    "seed-001": {"hidden": [64, 64, 64], "dropout": 0.0, "optimizer": "adam", "lr": 1e-3, "batch": 10},
    "seed-004": {"hidden": [512, 512], "dropout": 0.2, "optimizer": "sgd", "lr": 0.01, "batch": 20},
    "mid": {"hidden": [512, 512], "dropout": 0.2, "optimizer": "adam", "lr": 1e-3, "batch": 128},
    "wide": {"hidden": [1024, 1024], "dropout": 0.0, "optimizer": "adam", "lr": 1e-3, "batch": 256},
}
# Epoch time as a fraction of PyTorch's that each fastmlp row aims for.
TARGETS = {("seed-001", "loop"): 0.2, ("seed-001", "fit"): 0.07, ("seed-004", "loop"): 0.4,
           ("seed-004", "fit"): 0.3, ("mid", "loop"): 0.6, ("mid", "fit"): 0.6, ("wide", "loop"): 0.75,
           ("wide", "fit"): 0.75}
IMPLS = ["loop", "fit", "numpy", "torch"]
LABELS = {"loop": "fastmlp loop", "fit": "fastmlp fit", "numpy": "NumPy", "torch": "PyTorch",
          "loop-bf16": "fastmlp loop bf16", "fit-bf16": "fastmlp fit bf16", "torch-bf16": "PyTorch bf16"}


def layer_sizes(cfg: dict) -> list[int]:
    return [784] + cfg["hidden"] + [10]


def train_flops_per_sample(sizes: list[int]) -> int:
    """Multiply-adds x2 of a training step per sample: forward, weight gradients, and input
    gradients of every layer but the first."""
    prods = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * (3 * sum(prods) - prods[0])


def build_model(lib, cfg: dict):
    """The configuration's MLP in fastmlp or PyTorch: Flatten, then Linear-ReLU(-Dropout) blocks."""
    nn = lib.nn
    layers = [nn.Flatten()]
    sizes = layer_sizes(cfg)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if cfg["dropout"]:
                layers.append(nn.Dropout(cfg["dropout"]))
    return nn.Sequential(*layers)


def build_optimizer(lib, cfg: dict, params):
    if cfg["optimizer"] == "adam":
        return lib.optim.Adam(params, lr=cfg["lr"])
    return lib.optim.SGD(params, lr=cfg["lr"])


def seed_loop(model, criterion, optimizer, loader) -> None:
    """The tutorials' training loop, word for word."""
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()


def autocast_loop(lib, model, criterion, optimizer, loader) -> None:
    """The same loop in bfloat16 as PyTorch's autocast recipe writes it: the forward pass and the
    loss under autocast, backward and the step outside."""
    for x, y in loader:
        optimizer.zero_grad()
        with lib.autocast("cpu", dtype=lib.bfloat16):
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()


def accuracy(lib, model, x_test, y_test) -> float:
    model.eval()
    correct = 0
    with lib.no_grad():
        for i in range(0, len(x_test), 1000):
            out = model(x_test[i:i + 1000])
            correct += int((out.argmax(1) == y_test[i:i + 1000]).sum().item())
    model.train()
    return correct / len(y_test)


class Data:
    """MNIST as the three libraries take it: fastmlp datasets, torch tensors, NumPy arrays."""

    def __init__(self, root, download: bool, limit: int):
        from fastmlp import datasets, transforms
        from fastmlp.utils.data import Subset

        self.train = datasets.MNIST(root, train=True, download=download, transform=transforms.ToTensor())
        self.test = datasets.MNIST(root, train=False, download=download, transform=transforms.ToTensor())
        if limit:
            self.train = Subset(self.train, list(range(min(limit, len(self.train)))))
        n = len(self.train)
        base = self.train.dataset if limit else self.train
        self.x_train = (base.data.numpy()[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
        self.y_train = base.targets.numpy()[:n].copy()
        self.x_test = (self.test.data.numpy().astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        self.y_test = self.test.targets.numpy().copy()


def run_fastmlp(cfg: dict, data: Data, impl: str, seed: int, n: int, bf16: bool = False) -> tuple[float, float]:
    import fastmlp
    from fastmlp.utils.data import DataLoader, Subset

    fastmlp.manual_seed(seed)
    model = build_model(fastmlp, cfg)
    optimizer = build_optimizer(fastmlp, cfg, model.parameters())
    criterion = fastmlp.nn.CrossEntropyLoss()
    train = data.train if n == len(data.train) else Subset(data.train, list(range(n)))
    loader = DataLoader(train, batch_size=cfg["batch"], shuffle=True)
    t0 = time.perf_counter()
    if impl == "fit":
        fastmlp.train.fit(model, criterion, optimizer, loader, epochs=1, progress=False,
                          **({"precision": "bf16"} if bf16 else {}))
    elif bf16:
        autocast_loop(fastmlp, model, criterion, optimizer, loader)
    else:
        seed_loop(model, criterion, optimizer, loader)
    elapsed = time.perf_counter() - t0
    return elapsed, accuracy(fastmlp, model, fastmlp.from_numpy(data.x_test), fastmlp.from_numpy(data.y_test))


def run_torch(torch, cfg: dict, data: Data, seed: int, n: int, bf16: bool = False) -> tuple[float, float]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = build_model(torch, cfg)
    optimizer = build_optimizer(torch, cfg, model.parameters())
    criterion = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(data.x_train[:n]), torch.from_numpy(data.y_train[:n])),
                        batch_size=cfg["batch"], shuffle=True)
    t0 = time.perf_counter()
    if bf16:
        autocast_loop(torch, model, criterion, optimizer, loader)
    else:
        seed_loop(model, criterion, optimizer, loader)
    elapsed = time.perf_counter() - t0
    return elapsed, accuracy(torch, model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test))


def run_numpy(cfg: dict, data: Data, seed: int, n: int) -> tuple[float, float]:
    net = NumpyMLP(layer_sizes(cfg), dropout=cfg["dropout"], optimizer=cfg["optimizer"], lr=cfg["lr"], seed=seed)
    x = data.x_train[:n].reshape(n, -1)
    y = data.y_train[:n]
    b = cfg["batch"]
    t0 = time.perf_counter()
    order = net.rng.permutation(len(x))
    for i in range(0, len(x), b):
        idx = order[i:i + b]
        net.step(x[idx], y[idx])
    elapsed = time.perf_counter() - t0
    return elapsed, net.accuracy(data.x_test.reshape(len(data.x_test), -1), data.y_test)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated: " + ", ".join(IMPLS))
    p.add_argument("--repeat", type=int, default=3, help="epochs timed per implementation (median; default 3)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder with the MNIST idx files (default: $FASTMLP_DATA, else the user cache)")
    p.add_argument("--no-download", action="store_true", help="do not download MNIST when it is missing")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (a quick check)")
    p.add_argument("--no-plot", action="store_true", help="skip the bar chart")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: train on that GPU (fit and loop vs "
                                                    "PyTorch CUDA)")
    p.add_argument("--precision", choices=["32", "bf16"], default="32",
                   help="bf16: also the loop and fit in bfloat16 (fastmlp.autocast, fit(precision='bf16')) "
                        "and PyTorch's loop under torch.autocast, with the bf16 targets")
    args = p.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    impls = [i for i in args.impls.split(",") if i]
    for c in configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    for i in impls:
        if i not in IMPLS:
            p.error(f"unknown implementation {i!r}; choose from {', '.join(IMPLS)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.device != "cpu":
        return main_cuda(args, configs, impls)

    import fastmlp
    from fastmlp import _info

    torch = common.torch_or_none()
    if torch is None and "torch" in impls:
        impls.remove("torch")
    if args.precision == "bf16":
        impls += [f"{i}-bf16" for i in ("loop", "fit", "torch") if i in impls]
    if torch is not None:
        torch.set_num_threads(fastmlp.get_num_threads())
    try:
        data = Data(args.data, not args.no_download, args.limit)
    except (OSError, RuntimeError) as e:
        print(f"bench_train: MNIST is needed: {e}", file=sys.stderr)
        return 2
    info = fastmlp.info()
    print(f"fastmlp {info['version']} ({info['isa']}, {info['threads']} threads), numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}, {os.cpu_count()} cpus; "
          f"{len(data.y_train)} training images, median of {args.repeat}")

    results = []
    for name in configs:
        cfg = CONFIGS[name]
        times: dict[str, list] = {i: [] for i in impls}
        accs: dict[str, list] = {i: [] for i in impls}
        def run(impl: str, seed: int, n: int) -> tuple[float, float]:
            base, bf16 = impl.removesuffix("-bf16"), impl.endswith("-bf16")
            if base == "torch":
                return run_torch(torch, cfg, data, seed, n, bf16)
            if base == "numpy":
                return run_numpy(cfg, data, seed, n)
            return run_fastmlp(cfg, data, base, seed, n, bf16)

        for impl in impls:  # untimed warm-up: first allocations, thread pools, caches
            run(impl, 0, min(len(data.y_train), 64 * cfg["batch"]))
        for r in range(args.repeat):
            order = impls[r % len(impls):] + impls[:r % len(impls)]
            for impl in order:
                t, a = run(impl, r, len(data.y_train))
                times[impl].append(t)
                accs[impl].append(a)
        flops = train_flops_per_sample(layer_sizes(cfg)) * len(data.y_train)
        med = {i: statistics.median(times[i]) for i in impls}
        for impl in impls:
            results.append({"config": name, "impl": impl, "epoch_s": med[impl],
                            "samples_per_s": len(data.y_train) / med[impl],
                            "test_acc": statistics.median(accs[impl]),
                            "vs_torch": med[impl] / med["torch"] if "torch" in med else None,
                            "vs_numpy": med[impl] / med["numpy"] if "numpy" in med else None,
                            "gflops": flops / med[impl] / 1e9, "target": TARGETS.get((name, impl)),
                            "runs": len(times[impl])})
        print_table([row for row in results if row["config"] == name], name, cfg)
        if "fit-bf16" in med and "fit" in med:
            line = f"bf16 fit: {med['fit'] / med['fit-bf16']:.2f}x the samples/s of float32 fit (target 1.8x)"
            if "torch-bf16" in med:
                line += f", {med['fit-bf16'] / med['torch-bf16']:.3f}x PyTorch bf16's epoch time (target 0.5x)"
            print(f"{line}; {_info.bf16_note()}")
    path = write_csv(results)
    print(f"wrote {path}")
    if not args.no_plot:
        png = plot(results)
        print(f"wrote {png}" if png else "(no bar chart: matplotlib is not installed)")
    return 0


# ---- --device cuda -------------------------------------------------------------------------------
CUDA_IMPLS = ["loop", "fit", "torch"]


def cuda_loop(model, criterion, optimizer, loader, device) -> None:
    """The tutorials' loop on a GPU: each batch moved to the device before the step."""
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()


def run_fastmlp_cuda(cfg: dict, data: Data, impl: str, seed: int, n: int, device) -> tuple[float, float]:
    import fastmlp
    from fastmlp.utils.data import DataLoader, Subset

    fastmlp.manual_seed(seed)
    model = build_model(fastmlp, cfg).to(device)
    optimizer = build_optimizer(fastmlp, cfg, model.parameters())
    criterion = fastmlp.nn.CrossEntropyLoss()
    train = data.train if n == len(data.train) else Subset(data.train, list(range(n)))
    loader = DataLoader(train, batch_size=cfg["batch"], shuffle=True)
    fastmlp.cuda.synchronize()
    t0 = time.perf_counter()
    if impl == "fit":
        fastmlp.train.fit(model, criterion, optimizer, loader, epochs=1, progress=False, device=device)
    else:
        cuda_loop(model, criterion, optimizer, loader, device)
    fastmlp.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return elapsed, accuracy(fastmlp, model, fastmlp.from_numpy(data.x_test).to(device),
                             fastmlp.from_numpy(data.y_test).to(device))


def run_torch_cuda(torch, cfg: dict, data: Data, seed: int, n: int, device: str) -> tuple[float, float]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = build_model(torch, cfg).to(device)
    optimizer = build_optimizer(torch, cfg, model.parameters())
    criterion = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(data.x_train[:n]), torch.from_numpy(data.y_train[:n])),
                        batch_size=cfg["batch"], shuffle=True)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    cuda_loop(model, criterion, optimizer, loader, device)
    torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return elapsed, accuracy(torch, model, torch.from_numpy(data.x_test).to(device),
                             torch.from_numpy(data.y_test).to(device))


def main_cuda(args, configs: list[str], impls: list[str]) -> int:
    """The configurations on a GPU: fastmlp fit and loop against the same PyTorch CUDA loop."""
    import fastmlp

    try:
        device = fastmlp.device(args.device)
    except (TypeError, ValueError) as e:
        print(f"bench_train: --device {args.device!r}: {e}", file=sys.stderr)
        return 2
    if device.type != "cuda":
        print(f"bench_train: --device must be cpu or cuda[:N]; got {args.device!r}", file=sys.stderr)
        return 2
    if not fastmlp.cuda.is_available():
        print(f"bench_train: --device {device}: CUDA is not available here: {fastmlp.cuda.why_unavailable()}",
              file=sys.stderr)
        return 2
    if device.index is not None and device.index >= fastmlp.cuda.device_count():
        print(f"bench_train: --device {device}: this machine has {fastmlp.cuda.device_count()} CUDA device(s)",
              file=sys.stderr)
        return 2
    impls = [i for i in impls if i in CUDA_IMPLS] or list(CUDA_IMPLS)
    torch = common.torch_or_none()
    if torch is not None and not torch.cuda.is_available():
        print(f"bench_train: NOTE: torch {torch.__version__} has no usable CUDA; the PyTorch CUDA row is left out",
              file=sys.stderr)
        torch = None
    if torch is None and "torch" in impls:
        impls.remove("torch")
    try:
        data = Data(args.data, not args.no_download, args.limit)
    except (OSError, RuntimeError) as e:
        print(f"bench_train: MNIST is needed: {e}", file=sys.stderr)
        return 2
    name = fastmlp.cuda.get_device_name(device)
    print(f"fastmlp {fastmlp.info()['version']} on {device} ({name}), torch "
          f"{torch.__version__ + ' CUDA ' + str(torch.version.cuda) if torch else 'not available'}; "
          f"{len(data.y_train)} training images, median of {args.repeat}")

    def run(cfg: dict, impl: str, seed: int, n: int) -> tuple[float, float]:
        if impl == "torch":
            return run_torch_cuda(torch, cfg, data, seed, n, str(device))
        return run_fastmlp_cuda(cfg, data, impl, seed, n, device)

    results = []
    for cname in configs:
        cfg = CONFIGS[cname]
        times: dict[str, list] = {i: [] for i in impls}
        accs: dict[str, list] = {i: [] for i in impls}
        for impl in impls:  # untimed warm-up: CUDA contexts, kernel loading, memory pools
            run(cfg, impl, 0, min(len(data.y_train), 64 * cfg["batch"]))
        for r in range(args.repeat):
            order = impls[r % len(impls):] + impls[:r % len(impls)]
            for impl in order:
                t, a = run(cfg, impl, r, len(data.y_train))
                times[impl].append(t)
                accs[impl].append(a)
        flops = train_flops_per_sample(layer_sizes(cfg)) * len(data.y_train)
        med = {i: statistics.median(times[i]) for i in impls}
        for impl in impls:
            results.append({"config": cname, "impl": impl, "epoch_s": med[impl],
                            "samples_per_s": len(data.y_train) / med[impl],
                            "test_acc": statistics.median(accs[impl]),
                            "vs_torch": med[impl] / med["torch"] if "torch" in med else None, "vs_numpy": None,
                            "gflops": flops / med[impl] / 1e9, "target": GPU_TARGETS.get((cname, impl)),
                            "runs": len(times[impl])})
        print_table([row for row in results if row["config"] == cname], cname + f" on {device}", cfg)
    print(f"wrote {write_csv(results, 'train_cuda.csv')}")
    return 0


# Epoch time as a fraction of PyTorch CUDA's that the fastmlp rows aim for on a GPU (issue 20).
GPU_TARGETS = {("seed-004", "fit"): 0.2, ("seed-004", "loop"): 0.2, ("mid", "fit"): 0.3, ("mid", "loop"): 0.3}


def _fmt(v, spec: str, suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


def print_table(rows: list[dict], name: str, cfg: dict) -> None:
    sizes = "-".join(map(str, layer_sizes(cfg)))
    drop = f", dropout {cfg['dropout']}" if cfg["dropout"] else ""
    print(f"\n{name}: {sizes} ReLU{drop}, {cfg['optimizer'].upper() if cfg['optimizer'] == 'sgd' else 'Adam'} "
          f"{cfg['lr']:g}, batch {cfg['batch']}")
    header = ["impl", "s/epoch", "samples/s", "test acc", "x torch", "x numpy", "GFLOP/s", "target"]
    body = [[LABELS[r["impl"]], _fmt(r["epoch_s"], ".3f"), _fmt(r["samples_per_s"], ",.0f"),
             _fmt(100 * r["test_acc"], ".2f", "%"), _fmt(r["vs_torch"], ".3f"), _fmt(r["vs_numpy"], ".3f"),
             _fmt(r["gflops"], ".1f"), _fmt(r["target"], ".2f", "x torch")] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for b in body:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))


def write_csv(results: list[dict], name: str = "train.csv") -> str:
    import csv

    os.makedirs(common.results_dir(), exist_ok=True)
    path = os.path.join(common.results_dir(), name)
    machine = f"{platform.machine()} {os.cpu_count()} cpus"
    cols = ["config", "impl", "epoch_s", "samples_per_s", "test_acc", "vs_torch", "vs_numpy", "gflops", "target",
            "runs"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + ["machine"])
        for r in results:
            w.writerow([("" if r[c] is None else f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in cols]
                       + [machine])
    return path


def plot(results: list[dict]):
    """Grouped bars of seconds per epoch (log scale), one group per configuration."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    configs = list(dict.fromkeys(r["config"] for r in results))
    impls = list(dict.fromkeys(r["impl"] for r in results))
    fig, ax = plt.subplots(figsize=(1.9 * len(configs) + 2, 4))
    width = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, c in enumerate(configs):
            for r in results:
                if r["config"] == c and r["impl"] == impl:
                    xs.append(i + (j - (len(impls) - 1) / 2) * width)
                    ys.append(r["epoch_s"])
        ax.bar(xs, ys, width, label=LABELS[impl])
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels(configs)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per MNIST epoch (log scale)")
    ax.set_title("One training epoch, median of runs (lower is faster)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(common.results_dir(), "train.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
