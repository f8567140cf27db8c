"""The ``fastmlp`` command line (also ``python -m fastmlp``).

    fastmlp info                       version, CPU kernel set, threads, CUDA status
    fastmlp train [options]            train an MLP on MNIST or Fashion-MNIST
    fastmlp evaluate CHECKPOINT        test accuracy of a saved model, per class
    fastmlp bench [NAME] [args]        run a benchmark shipped with the package: kernels,
                                       step, train, or all three; without NAME, list them
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
from typing import Optional

DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
OPTIMIZERS = ("sgd", "adam", "adamw")
# `fastmlp bench NAME` runs the script fastmlp/benchmarks/<module>.py (benchmarks/ in a checkout)
# in a fresh interpreter.
BENCHMARKS = {"kernels": "bench_kernels", "step": "bench_step", "train": "bench_train"}
BENCHMARK_HELP = {
    "kernels": "each kernel against the plain NumPy way of computing the same thing (--quick, --only gemm,...)",
    "step": "one training step of seed 001's network written like its loop, fastmlp against PyTorch",
    "train": "one MNIST epoch per configuration: fastmlp (loop and fit), NumPy and PyTorch (--configs, --repeat)",
}
MNIST_MEAN_STD = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ---- info ---------------------------------------------------------------------------------------
def _cmd_info(args: argparse.Namespace) -> int:
    from ._info import info

    d = info()
    print(f"fastmlp {d['version']}")
    print(f"CPU kernels: {d['isa']} (available: {', '.join(d['available_isas'])})")
    print(f"OpenMP threads: {d['threads']}")
    print(f"CUDA: {d['cuda']}")
    return 0


# ---- data ---------------------------------------------------------------------------------------
def _transform(normalize: Optional[list]):
    from . import transforms

    steps = [transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize((normalize[0],), (normalize[1],)))
    steps.append(transforms.Flatten())
    return transforms.Compose(steps)


def _dataset(name: str, root: Optional[str], train: bool, download: bool, normalize: Optional[list]):
    from . import datasets

    cls = getattr(datasets, DATASETS[name])
    return cls(root, train=train, transform=_transform(normalize), download=download)


# ---- train --------------------------------------------------------------------------------------
def _parse_hidden(text: str) -> list:
    try:
        sizes = [int(s) for s in text.replace(" ", ",").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden sizes must be integers separated by commas, e.g. 512,512; "
                                         f"got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive; got {text!r}")
    return sizes


def _fraction(text: str) -> float:
    v = float(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text}")
    return v


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return v


def _check_device(spec: str):
    """The device named on the command line; CommandError when it is unknown or not usable here."""
    import fastmlp

    try:
        dev = fastmlp.device(spec)
    except (ValueError, RuntimeError) as e:
        raise CommandError(f"--device {spec}: {e}") from None
    if dev.type == "cuda" and not fastmlp.cuda.is_available():
        raise CommandError(f"--device {spec}: CUDA is not available: {fastmlp.cuda.why_unavailable()}; "
                           "use --device cpu")
    return dev


def _make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return optim.AdamW(params, lr=lr, weight_decay=weight_decay if weight_decay else 0.01)


def _cmd_train(args: argparse.Namespace) -> int:
    import fastmlp

    from . import nn
    from .train import EarlyStopping, EpochLogger, ModelCheckpoint, evaluate, fit, plot_history
    from .train.mlp import build_mlp, load_mlp_checkpoint, mlp_checkpoint_extra
    from .utils.data import DataLoader, Subset, SubsetRandomSampler

    _check_device(args.device)
    if args.threads:
        fastmlp.set_num_threads(args.threads)
    fastmlp.manual_seed(args.seed)
    normalize = list(MNIST_MEAN_STD[args.dataset]) if args.normalize else None
    train_data = _dataset(args.dataset, args.data, True, not args.no_download, normalize)
    test_data = _dataset(args.dataset, args.data, False, not args.no_download, normalize)

    # the validation split of the tutorial: shuffle the indices, hold out the first val_fraction
    n = len(train_data)
    indices = fastmlp.randperm(n).numpy()
    split = int(math.floor(args.val_fraction * n))
    train_idx, valid_idx = indices[split:], indices[:split]
    eval_batch = max(args.batch_size, 500)
    train_loader = DataLoader(train_data, batch_size=args.batch_size, sampler=SubsetRandomSampler(train_idx))
    valid_loader = DataLoader(Subset(train_data, valid_idx), batch_size=eval_batch) if split else None
    test_loader = DataLoader(test_data, batch_size=eval_batch)

    arch = {"in_features": 28 * 28, "hidden": args.hidden, "out_features": len(train_data.classes),
            "activation": args.activation, "dropout": args.dropout}
    model = build_mlp(**arch)
    if args.device != "cpu":
        model.to(args.device)
    lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 1e-3)
    optimizer = _make_optimizer(args.optimizer, model.parameters(), lr, args.momentum, args.weight_decay)
    criterion = nn.CrossEntropyLoss()
    print(model)
    print(f"{DATASETS[args.dataset]}: {len(train_idx)} training, {split} validation, {len(test_data)} test images "
          f"from {train_data.root}; {args.optimizer} lr={lr:g}, batch {args.batch_size}, {args.epochs} epochs, "
          f"seed {args.seed}", flush=True)

    monitor = "val_loss" if valid_loader is not None else "train_loss"
    extra = mlp_checkpoint_extra(arch, dataset=args.dataset, normalize=normalize,
                                 classes=list(train_data.classes))
    checkpoint = ModelCheckpoint(args.checkpoint, monitor=monitor, verbose=True, extra=extra)
    callbacks = [EpochLogger(), checkpoint]
    if args.patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.patience, verbose=True))
    stem, ext = os.path.splitext(args.checkpoint)
    state_path = args.resume or f"{stem}-state{ext}"
    history = fit(model, criterion, optimizer, train_loader, valid_loader, epochs=args.epochs,
                  callbacks=callbacks, progress=not args.no_progress, checkpoint_every=1,
                  checkpoint_path=state_path, resume_from=args.resume)

    if history.interrupted:
        print(f"Interrupted after {len(history)} complete epoch(s).")
    if len(history) and args.plot != "":
        plot_path = args.plot or os.path.splitext(args.checkpoint)[0] + "-history.png"
        sizes = "-".join(str(n) for n in [arch["in_features"], *args.hidden, arch["out_features"]])
        if plot_history(history, plot_path, title=f"{DATASETS[args.dataset]} MLP {sizes}"):
            print(f"History plot: {plot_path}")
    if checkpoint.last_saved is None:
        print("No checkpoint was saved (no complete epoch).")
        return 130 if history.interrupted else 1
    # evaluate the best model, as the tutorial does: reload the checkpoint saved at the best validation loss
    best, info = load_mlp_checkpoint(checkpoint.last_saved)
    if args.device != "cpu":
        best.to(args.device)
    print(f"Best checkpoint: {checkpoint.last_saved} (epoch {info.get('epoch')})\n")
    result = evaluate(best, test_loader, criterion)
    classes = train_data.classes if args.dataset != "mnist" else None
    print(result.report() if classes is None else _report_with(result, classes))
    print(f"\nTest accuracy: {100 * result.accuracy:.2f}%")
    history_best = history.best(monitor)
    if history_best is not None:
        print(f"Best {monitor}: {history_best[monitor]:.6f} at epoch {history_best['epoch']}")
    return 130 if history.interrupted else 0


def _report_with(result, classes) -> str:
    from .train import format_class_report

    return format_class_report(result, classes)


# ---- evaluate ----------------------------------------------------------------------------------
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import nn
    from .serialization import CheckpointError
    from .train import evaluate, format_class_report, plot_confusion_matrix
    from .train.mlp import CheckpointMismatchError, load_mlp_checkpoint
    from .utils.data import DataLoader

    if not os.path.isfile(args.checkpoint):
        raise CommandError(f"no such checkpoint: '{args.checkpoint}'")
    _check_device(args.device)
    arch = {"activation": args.activation} if args.activation else None
    try:
        model, info = load_mlp_checkpoint(args.checkpoint, arch)
    except CheckpointMismatchError:
        raise
    except CheckpointError as e:  # truncated, corrupted, a PyTorch pickle...; the message names the file
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"can't read checkpoint '{args.checkpoint}': {e.strerror or e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CommandError(f"checkpoint '{args.checkpoint}' does not describe an MLP fastmlp can rebuild "
                           f"({type(e).__name__}: {e})") from None
    dataset = args.dataset or info.get("dataset") or "mnist"
    if dataset not in DATASETS:
        raise CommandError(f"the checkpoint names an unknown dataset {dataset!r}; pass --dataset")
    in_features = info["arch"]["in_features"]
    if in_features != 28 * 28:
        raise CommandError(f"checkpoint '{args.checkpoint}' is a model for {in_features} inputs; "
                           f"{DATASETS[dataset]} images have {28 * 28} pixels")
    if args.device != "cpu":
        model.to(args.device)
    test_data = _dataset(dataset, args.data, False, not args.no_download, info.get("normalize"))
    if info["arch"]["out_features"] != len(test_data.classes):
        raise CommandError(f"checkpoint '{args.checkpoint}' has {info['arch']['out_features']} outputs but "
                           f"{DATASETS[dataset]} has {len(test_data.classes)} classes")
    result = evaluate(model, DataLoader(test_data, batch_size=args.batch_size), nn.CrossEntropyLoss())
    print(f"{args.checkpoint}: MLP {info['arch']['in_features']}-"
          + "-".join(str(h) for h in info["arch"]["hidden"]) + f"-{info['arch']['out_features']} "
          f"({info['arch'].get('activation', 'relu')}) on the {DATASETS[dataset]} test set\n")
    classes = test_data.classes if dataset != "mnist" else None
    print(format_class_report(result, classes))
    print(f"\nTest accuracy: {100 * result.accuracy:.2f}%")
    if args.plot:
        if plot_confusion_matrix(result.confusion_matrix, args.plot, classes=classes):
            print(f"Confusion matrix plot: {args.plot}")
    return 0


# ---- bench -------------------------------------------------------------------------------------
def _benchmarks_package():
    """fastmlp.benchmarks: installed with the package, or the repository's benchmarks/ in a source checkout."""
    try:
        return importlib.import_module("fastmlp.benchmarks")
    except ModuleNotFoundError as e:
        if e.name != "fastmlp.benchmarks":
            raise
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    init = os.path.join(root, "benchmarks", "__init__.py")
    if not os.path.isfile(init):
        raise CommandError("the benchmarks are not installed with this copy of fastmlp (no fastmlp/benchmarks and "
                           "no benchmarks/ folder in a source checkout)")
    spec = importlib.util.spec_from_file_location("fastmlp.benchmarks", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastmlp.benchmarks"] = module
    spec.loader.exec_module(module)
    return module


_BENCH_CHILD = "FASTMLP_BENCH_CHILD"


def _benchmark_list() -> str:
    width = max(len(n) for n in BENCHMARKS)
    lines = [f"  {name:<{width}}  {BENCHMARK_HELP[name]}" for name in BENCHMARKS]
    lines.append(f"  {'all':<{width}}  the three in turn, with their default settings")
    return "\n".join(lines)


def _run_benchmark(pkg, name: str, argv: list) -> int:
    if not os.environ.get(_BENCH_CHILD):
        # NumPy (and its thread pool) is loaded by now; the benchmark's thread-pool
        # settings (benchmarks/common.py) only act in a fresh interpreter, so run it there.
        import subprocess

        common = importlib.import_module("fastmlp.benchmarks.common")
        env = dict(os.environ, **{_BENCH_CHILD: "1"})
        for k, v in common.THREAD_POOL_ENV.items():
            env.setdefault(k, v)
        script = os.path.join(os.path.dirname(pkg.__file__), BENCHMARKS[name] + ".py")
        return subprocess.call([sys.executable, script, *argv], env=env)
    module = importlib.import_module(f"fastmlp.benchmarks.{BENCHMARKS[name]}")
    rc = module.main(list(argv))
    return int(rc or 0)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.name is None:
        print("Benchmarks (fastmlp bench NAME [args]; fastmlp bench NAME --help for its options):")
        print(_benchmark_list())
        return 0
    if args.name != "all" and args.name not in BENCHMARKS:
        raise CommandError(f"unknown benchmark {args.name!r}; choose from {', '.join(BENCHMARKS)} (or all)")
    if args.name == "all" and args.args:
        raise CommandError("bench all runs each benchmark with its default settings and takes no arguments; "
                           "pass options to one benchmark at a time (fastmlp bench NAME --help)")
    pkg = _benchmarks_package()
    if args.name != "all":
        return _run_benchmark(pkg, args.name, list(args.args))
    worst = 0
    for name in BENCHMARKS:
        print(f"== fastmlp bench {name} ==", flush=True)
        rc = _run_benchmark(pkg, name, [])
        worst = worst or rc
    return worst


# ---- parser -------------------------------------------------------------------------------------
def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", default=None,
                   help="data folder: MNIST's idx files in DIR/MNIST/raw or DIR itself, Fashion-MNIST's in "
                        "DIR/FashionMNIST/raw (default: $FASTMLP_DATA, else ~/.cache/fastmlp)")
    p.add_argument("--no-download", action="store_true", help="do not download missing files")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, CPU kernel set, threads, CUDA status").set_defaults(func=_cmd_info)

    t = sub.add_parser("train", help="train an MLP on MNIST or Fashion-MNIST",
                       description="Train an MLP classifier (defaults: the dropout MLP of the MNIST tutorial: "
                                   "784-512-512-10, ReLU, dropout 0.2, SGD lr 0.01, batch 20, 20% validation), "
                                   "keep the checkpoint with the best validation loss, and report test accuracy "
                                   "per class.")
    t.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    _add_data_options(t)
    t.add_argument("--hidden", type=_parse_hidden, default=[512, 512], metavar="H1,H2,...",
                   help="hidden layer sizes (default: 512,512)")
    t.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "gelu", "leaky_relu"])
    t.add_argument("--dropout", type=_fraction, default=0.2, help="dropout after each hidden layer (default: 0.2)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.01 for sgd, 0.001 for adam)")
    t.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--batch-size", type=_positive_int, default=20)
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="share of the training images held out for validation (default: 0.2)")
    t.add_argument("--normalize", action="store_true", help="standardise pixels with the dataset's mean and std")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint", default="model.pt", help="where to save the best model (default: model.pt)")
    t.add_argument("--resume", default=None, metavar="STATE",
                   help="continue the run that wrote the training state STATE (each run writes one after every "
                        "epoch, beside the checkpoint: model.pt -> model-state.pt); give the same options again")
    t.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without improvement (default: never)")
    t.add_argument("--plot", default=None, metavar="PNG",
                   help="history plot (default: <checkpoint>-history.png; '' for none)")
    t.add_argument("--no-plot", dest="plot", action="store_const", const="", help="do not write the history plot")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for the kernels")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved model on the test set")
    e.add_argument("checkpoint", help="a checkpoint written by `fastmlp train` (or a state_dict of an MLP)")
    e.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                   help="default: the dataset stored in the checkpoint, else mnist")
    _add_data_options(e)
    e.add_argument("--batch-size", type=_positive_int, default=1000)
    e.add_argument("--activation", default=None, choices=["relu", "tanh", "sigmoid", "gelu", "leaky_relu"],
                   help="for a plain state_dict without the architecture (default: relu)")
    e.add_argument("--plot", default=None, metavar="PNG", help="also write the confusion matrix as a PNG")
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("bench", help="run a benchmark: " + ", ".join(BENCHMARKS) + " or all",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run a benchmark shipped with fastmlp in a fresh interpreter; it prints a table "
                                   "and writes CSV files.\n\nbenchmarks:\n" + _benchmark_list())
    b.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help=f"{', '.join(BENCHMARKS)} or all; without NAME, list the benchmarks")
    b.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark (see fastmlp bench NAME "
                   "--help)")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .datasets import DatasetNotFoundError, DownloadError, IdxError
    from .train.mlp import CheckpointMismatchError

    try:
        return args.func(args)
    except (CommandError, DatasetNotFoundError, DownloadError, IdxError, CheckpointMismatchError) as e:
        print(f"fastmlp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nfastmlp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
