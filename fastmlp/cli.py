"""The ``fastmlp`` command line (also ``python -m fastmlp``).

    fastmlp info                       version, CPU kernel set, bfloat16 GEMM path, threads, CUDA status
    fastmlp train [options]            train an MLP on MNIST, Fashion-MNIST or a table of your own
                                       (--data-file table.csv --target label)
    fastmlp evaluate CHECKPOINT        test accuracy of a saved model, per class (MSE and R² for regression)
    fastmlp predict CHECKPOINT TABLE   predictions of a table model for the rows of a table, as CSV
    fastmlp export CHECKPOINT OUT.onnx the model (with its input standardisation) as an ONNX file
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
    print(f"bfloat16 GEMM: {d['bf16']}")
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


# ---- tables -------------------------------------------------------------------------------------
def _read_table(path: str, target: Optional[str], features: Optional[list] = None):
    from .datasets.table import TableError, read_table

    try:
        return read_table(path, target, features)
    except TableError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"can't read '{path}': {e.strerror or e}") from None


def _encode(table, task: Optional[str], classes: Optional[list] = None):
    from .datasets.table import TableError, encode_target

    try:
        return encode_target(table, task, classes)
    except TableError as e:
        raise CommandError(str(e)) from None


def _table_tensors(x, y, task: str, target_scale: Optional[list]):
    """(inputs, targets) tensors: class indices for classification, standardised [N, 1] values for regression."""
    import numpy as np

    import fastmlp

    if task == "regression":
        mean, std = target_scale
        y = ((y.astype(np.float64) - mean) / std).astype(np.float32).reshape(-1, 1)
    return fastmlp.from_numpy(np.ascontiguousarray(x)), fastmlp.from_numpy(np.ascontiguousarray(y))


def _regression_report(model, x, y, target_scale: list, batch_size: int) -> tuple[float, float]:
    """(MSE, R²) of the model's predictions in the target's own units."""
    import numpy as np

    pred = _predict(model, x, batch_size)[:, 0].astype(np.float64) * target_scale[1] + target_scale[0]
    err = pred - y.astype(np.float64)
    mse = float(np.mean(err ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err ** 2)) / total if total > 0 else float("nan")
    return mse, r2


def _predict(model, x, batch_size: int):
    import numpy as np

    import fastmlp

    model.eval()
    out = []
    with fastmlp.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(fastmlp.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))).numpy())
    return np.concatenate(out)


def _table_record(info: dict, checkpoint: str) -> dict:
    record = info.get("table")
    if not isinstance(record, dict) or not {"features", "task", "standardize"} <= set(record):
        raise CommandError(f"checkpoint '{checkpoint}' was not trained on a table (no table record; train one with "
                           "fastmlp train --data-file FILE --target COLUMN)")
    return record


def _load_model(checkpoint: str, arch: Optional[dict] = None):
    from .serialization import CheckpointError
    from .train.mlp import CheckpointMismatchError, load_mlp_checkpoint

    if not os.path.isfile(checkpoint):
        raise CommandError(f"no such checkpoint: '{checkpoint}'")
    try:
        return load_mlp_checkpoint(checkpoint, arch)
    except CheckpointMismatchError:
        raise
    except CheckpointError as e:  # truncated, corrupted, a PyTorch pickle...; the message names the file
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"can't read checkpoint '{checkpoint}': {e.strerror or e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CommandError(f"checkpoint '{checkpoint}' does not describe an MLP fastmlp can rebuild "
                           f"({type(e).__name__}: {e})") from None


def _with_output_scale(model, record: dict):
    """The model followed by Linear(1, 1) = std·y + mean for a regression model trained on standardised targets,
    so its outputs are in the target's units."""
    from . import nn
    from .autograd import no_grad

    scale = record.get("target_scale")
    if record["task"] != "regression" or not scale:
        return model
    head = nn.Linear(1, 1)
    with no_grad():
        head.weight.fill_(float(scale[1]))
        head.bias.fill_(float(scale[0]))
    return nn.Sequential(model, head).eval()


def _train_table(args: argparse.Namespace):
    """(train_loader, valid_loader, arch, extra, description) for --data-file."""
    import fastmlp
    from .datasets.table import Standardizer
    from .utils.data import DataLoader, Subset, SubsetRandomSampler, TensorDataset

    if args.target is None:
        raise CommandError("--data-file needs --target COLUMN (the column to predict; for a .npy features file, "
                           "the .npy file of targets)")
    table = _read_table(args.data_file, args.target)
    y, task, classes = _encode(table, args.task)
    n = len(table)
    indices = fastmlp.randperm(n).numpy()
    split = int(math.floor(args.val_fraction * n))
    train_idx, valid_idx = indices[split:], indices[:split]
    if len(train_idx) == 0:
        raise CommandError(f"'{args.data_file}' has {n} rows: none left for training after --val-fraction "
                           f"{args.val_fraction}")
    scaler = Standardizer.fit(table.features, train_idx)
    target_scale = None
    if task == "regression":
        ty = y[train_idx].astype("float64")
        target_scale = [float(ty.mean()), float(ty.std()) or 1.0]
    inputs, targets = _table_tensors(scaler.transform(table.features), y, task, target_scale)
    data = TensorDataset(inputs, targets)
    eval_batch = max(args.batch_size, 500)
    train_loader = DataLoader(data, batch_size=args.batch_size, sampler=SubsetRandomSampler(train_idx))
    valid_loader = DataLoader(Subset(data, valid_idx), batch_size=eval_batch) if split else None
    arch = {"in_features": len(table.feature_names), "hidden": args.hidden,
            "out_features": len(classes) if classes else 1, "activation": args.activation, "dropout": args.dropout}
    record = {"source": os.path.basename(args.data_file), "target": table.target_name, "task": task,
              "features": list(table.feature_names), "standardize": scaler.to_record(),
              "target_scale": target_scale}
    extra = {"table": record, "classes": classes}
    what = f"{len(classes)} classes" if classes else "regression"
    text = (f"{args.data_file}: {len(train_idx)} training and {split} validation rows, "
            f"{len(table.feature_names)} features, target '{table.target_name}' ({what})")
    eval_rows = valid_idx if split else train_idx
    return train_loader, valid_loader, arch, extra, text, (table, y, eval_rows, scaler)


def _report_table(model, record: dict, classes, x, y, batch_size: int, title: str) -> None:
    """Print the per-class table and accuracy, or MSE and R², of `model` on standardised rows `x`."""
    from . import nn
    from .train import evaluate, format_class_report
    from .utils.data import DataLoader, TensorDataset

    if record["task"] == "regression":
        mse, r2 = _regression_report(model, x, y, record["target_scale"], batch_size)
        print(f"{title} MSE: {mse:.6g}")
        print(f"{title} R²: {r2:.4f}")
        return
    inputs, targets = _table_tensors(x, y, "classification", None)
    result = evaluate(model, DataLoader(TensorDataset(inputs, targets), batch_size=batch_size),
                      nn.CrossEntropyLoss(), num_classes=len(classes))
    print(format_class_report(result, [str(c) for c in classes], title=title))
    print(f"\n{title} accuracy: {100 * result.accuracy:.2f}%")


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


def _number(text: str, kind: type):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}; got {text!r}") \
            from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
    return v


def _fraction(text: str) -> float:
    v = _number(text, float)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text}")
    return v


def _bounded(kind: type, ok, wants: str):
    """An argparse type: a number of `kind` for which ok(value) holds, else "must be <wants>"."""
    def parse(text: str):
        v = _number(text, kind)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {wants}; got {text}")
        return v
    return parse


_positive_int = _bounded(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _bounded(float, lambda v: v > 0, "a positive number")
_non_negative_float = _bounded(float, lambda v: v >= 0, "a number >= 0")


def _seed(text: str) -> int:
    v = _number(text, int)
    if not -(2 ** 63) <= v < 2 ** 64:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits; got {text}")
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
    rank = _start_distributed()  # under mpiexec -n N: this process's rank (data-parallel training), else None
    eval_batch = max(args.batch_size, 500)
    if rank:  # rank 0 reads (and downloads) the data first, the others after it
        _barrier()
    if args.data_file is not None:
        train_loader, valid_loader, arch, info, data_text, held_out = _train_table(args)
        task = info["table"]["task"]
        title = os.path.basename(args.data_file)
    else:
        if args.target is not None or args.task is not None:
            raise CommandError("--target and --task go with --data-file (a table of your own)")
        task = "classification"
        title = DATASETS[args.dataset]
        normalize = list(MNIST_MEAN_STD[args.dataset]) if args.normalize else None
        train_data = _dataset(args.dataset, args.data, True, not args.no_download, normalize)
        test_data = _dataset(args.dataset, args.data, False, not args.no_download, normalize)

        # the validation split of the tutorial: shuffle the indices, hold out the first val_fraction
        n = len(train_data)
        indices = fastmlp.randperm(n).numpy()
        split = int(math.floor(args.val_fraction * n))
        train_idx, valid_idx = indices[split:], indices[:split]
        train_loader = DataLoader(train_data, batch_size=args.batch_size, sampler=SubsetRandomSampler(train_idx))
        valid_loader = DataLoader(Subset(train_data, valid_idx), batch_size=eval_batch) if split else None
        test_loader = DataLoader(test_data, batch_size=eval_batch)
        arch = {"in_features": 28 * 28, "hidden": args.hidden, "out_features": len(train_data.classes),
                "activation": args.activation, "dropout": args.dropout}
        info = {"dataset": args.dataset, "normalize": normalize, "classes": list(train_data.classes)}
        data_text = (f"{DATASETS[args.dataset]}: {len(train_idx)} training, {split} validation, {len(test_data)} "
                     f"test images from {train_data.root}")

    if rank == 0:
        _barrier()
    if rank is not None:
        train_loader = _distributed_loader(train_loader, args.seed)
    model = build_mlp(**arch)
    if args.device != "cpu":
        model.to(args.device)
    if rank is not None:
        from .nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 1e-3)
    optimizer = _make_optimizer(args.optimizer, model.parameters(), lr, args.momentum, args.weight_decay)
    criterion = nn.MSELoss() if task == "regression" else nn.CrossEntropyLoss()
    print(model)
    batch_text = f"batch {args.batch_size}" if rank is None else \
        f"batch {args.batch_size} per process x {_world_size()} processes"
    print(f"{data_text}; {args.optimizer} lr={lr:g}, {batch_text}, {args.epochs} epochs, "
          f"seed {args.seed}", flush=True)

    monitor = "val_loss" if valid_loader is not None else "train_loss"
    checkpoint = ModelCheckpoint(args.checkpoint, monitor=monitor, verbose=True, extra=mlp_checkpoint_extra(arch,
                                                                                                           **info))
    callbacks = [EpochLogger(), checkpoint]
    if args.patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.patience, verbose=True))
    stem, ext = os.path.splitext(args.checkpoint)
    state_path = args.resume or f"{stem}-state{ext}"
    history = fit(model, criterion, optimizer, train_loader, valid_loader, epochs=args.epochs,
                  callbacks=callbacks, progress=not args.no_progress, checkpoint_every=1,
                  checkpoint_path=state_path, resume_from=args.resume, precision=args.precision)
    if rank:  # rank 0 plots, reports and holds the checkpoint
        return 130 if history.interrupted else 0

    if history.interrupted:
        print(f"Interrupted after {len(history)} complete epoch(s).")
    if len(history) and args.plot != "":
        plot_path = args.plot or os.path.splitext(args.checkpoint)[0] + "-history.png"
        sizes = "-".join(str(n) for n in [arch["in_features"], *args.hidden, arch["out_features"]])
        if plot_history(history, plot_path, title=f"{title} MLP {sizes}"):
            print(f"History plot: {plot_path}")
    if checkpoint.last_saved is None:
        print("No checkpoint was saved (no complete epoch).")
        return 130 if history.interrupted else 1
    # evaluate the best model, as the tutorial does: reload the checkpoint saved at the best validation loss
    best, saved = load_mlp_checkpoint(checkpoint.last_saved)
    if args.device != "cpu":
        best.to(args.device)
    print(f"Best checkpoint: {checkpoint.last_saved} (epoch {saved.get('epoch')})\n")
    if args.data_file is not None:
        table, y, rows, scaler = held_out
        which = "Validation" if valid_loader is not None else "Training"
        _report_table(best, info["table"], info["classes"], scaler.transform(table.features[rows]), y[rows],
                      eval_batch, which)
    else:
        result = evaluate(best, test_loader, criterion)
        classes = train_data.classes if args.dataset != "mnist" else None
        print(result.report() if classes is None else _report_with(result, classes))
        print(f"\nTest accuracy: {100 * result.accuracy:.2f}%")
    history_best = history.best(monitor)
    if history_best is not None:
        print(f"Best {monitor}: {history_best[monitor]:.6f} at epoch {history_best['epoch']}")
    return 130 if history.interrupted else 0


def _start_distributed() -> Optional[int]:
    """Under ``mpiexec -n N`` (N > 1): join the process group and return this rank (the ranks
    other than 0 print nothing to stdout); otherwise None and nothing changes."""
    from . import distributed as dist

    if not dist.launched_by_mpiexec():
        return None
    if not dist.is_initialized():
        dist.init_process_group("mpi")
    rank = dist.get_rank()
    if rank != 0:
        sys.stdout = open(os.devnull, "w")
    return rank


def _world_size() -> int:
    from . import distributed as dist

    return dist.get_world_size()


def _barrier() -> None:
    from . import distributed as dist

    dist.barrier()


def _distributed_loader(loader, seed: int):
    """The training loader of one rank: its share of the training samples (DistributedSampler,
    shuffled each epoch from `seed`) in batches of --batch-size (per process)."""
    import numpy as np

    from .utils.data import DataLoader, DistributedSampler, Subset, SubsetRandomSampler

    dataset, sampler = loader.dataset, loader.sampler
    if isinstance(sampler, SubsetRandomSampler):
        dataset = Subset(dataset, np.asarray(sampler.indices, dtype=np.int64))
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=DistributedSampler(dataset, seed=seed))


def _report_with(result, classes) -> str:
    from .train import format_class_report

    return format_class_report(result, classes)


# ---- evaluate ----------------------------------------------------------------------------------
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import nn
    from .train import evaluate, format_class_report, plot_confusion_matrix
    from .utils.data import DataLoader

    if not os.path.isfile(args.checkpoint):
        raise CommandError(f"no such checkpoint: '{args.checkpoint}'")
    _check_device(args.device)
    arch = {"activation": args.activation} if args.activation else None
    model, info = _load_model(args.checkpoint, arch)
    if args.data_file is not None or "table" in info:
        return _evaluate_table(args, model, info)
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


def _evaluate_table(args: argparse.Namespace, model, info: dict) -> int:
    from .datasets.table import Standardizer

    record = _table_record(info, args.checkpoint)
    if args.data_file is None:
        raise CommandError(f"checkpoint '{args.checkpoint}' was trained on a table ({record.get('source')}); pass "
                           "--data-file FILE with the rows to evaluate on")
    target = args.target or record["target"]
    table = _read_table(args.data_file, target, record["features"])
    y, _, _ = _encode(table, record["task"], info.get("classes"))
    x = Standardizer.from_record(record["standardize"]).transform(table.features)
    arch = info["arch"]
    print(f"{args.checkpoint}: MLP {arch['in_features']}-" + "-".join(str(h) for h in arch["hidden"])
          + f"-{arch['out_features']} ({arch.get('activation', 'relu')}) on {args.data_file} ({len(table)} rows, "
          f"target '{target}')\n")
    _report_table(model, record, info.get("classes"), x, y, args.batch_size, "Test")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import csv

    import numpy as np

    from .datasets.table import Standardizer

    model, info = _load_model(args.checkpoint)
    record = _table_record(info, args.checkpoint)
    table = _read_table(args.table, None, record["features"])
    x = Standardizer.from_record(record["standardize"]).transform(table.features)
    out = _predict(_with_output_scale(model, record), x, args.batch_size)
    if record["task"] == "regression":
        header = ["prediction"]
        rows = ([repr(float(v))] for v in out[:, 0])
    else:
        classes = info["classes"]
        shifted = np.exp(out - out.max(1, keepdims=True))
        prob = shifted / shifted.sum(1, keepdims=True)
        header = ["prediction"] + [f"p_{c}" for c in classes]
        rows = ([str(classes[k])] + [f"{p:.6g}" for p in ps] for k, ps in zip(out.argmax(1), prob))
    try:
        f = open(args.output, "w", newline="") if args.output != "-" else sys.stdout
    except OSError as e:
        raise CommandError(f"can't write '{args.output}': {e.strerror or e}") from None
    try:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if f is not sys.stdout:
            f.close()
    if args.output != "-":
        print(f"{len(table)} predictions of '{record['target']}' written to {args.output}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from . import onnx as fastmlp_onnx

    model, info = _load_model(args.checkpoint)
    record = info.get("table")
    normalize = None
    if isinstance(record, dict) and "standardize" in record:
        normalize = (record["standardize"]["mean"], record["standardize"]["std"])
        model = _with_output_scale(model, record)
        inputs = f"{len(record['features'])} raw features ({', '.join(record['features'][:8])}" + \
            (", ...)" if len(record["features"]) > 8 else ")")
        outputs = ("the predicted " + repr(record["target"]) if record["task"] == "regression" else
                   f"scores (logits) of the classes {info.get('classes')}")
    else:
        if info.get("normalize"):
            normalize = tuple(info["normalize"])
        inputs = f"{info['arch']['in_features']} features" + (" (image pixels in [0, 1], flattened)"
                                                              if info.get("dataset") else "")
        outputs = f"{info['arch']['out_features']} scores (logits)"
    try:
        fastmlp_onnx.export(model, args.output, (1, info["arch"]["in_features"]), normalize=normalize)
    except ImportError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"can't write '{args.output}': {e.strerror or e}") from None
    print(f"{args.output}: ONNX (opset {fastmlp_onnx.OPSET}) of {args.checkpoint}; input 'input' [batch, "
          f"{info['arch']['in_features']}]: {inputs}" + ("; standardised inside the model" if normalize else "")
          + f"; output 'output': {outputs}")
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


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastmlp", description="fastmlp command line")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, CPU kernel set, threads, CUDA status").set_defaults(func=_cmd_info)

    t = sub.add_parser("train", help="train an MLP on MNIST, Fashion-MNIST or a table (--data-file)",
                       description="Train an MLP classifier (defaults: the dropout MLP of the MNIST tutorial: "
                                   "784-512-512-10, ReLU, dropout 0.2, SGD lr 0.01, batch 20, 20% validation), "
                                   "keep the checkpoint with the best validation loss, and report test accuracy "
                                   "per class. Under mpiexec -n N it trains data-parallel over N processes.")
    t.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    _add_data_options(t)
    t.add_argument("--data-file", metavar="FILE", default=None,
                   help="train on a table of your own instead: CSV with a header row, .npz, .npy (features; "
                        "--target names the targets' .npy) or Parquet (with pyarrow); numeric feature columns, "
                        "standardised with the training rows' mean and std (kept in the checkpoint)")
    t.add_argument("--target", metavar="COLUMN", default=None,
                   help="with --data-file: the column to predict (integer or string labels: classification)")
    t.add_argument("--task", choices=["classification", "regression"], default=None,
                   help="with --data-file: regression fits a numeric target with MSE and reports R² (default: "
                        "classification, for integer or string targets)")
    t.add_argument("--hidden", type=_parse_hidden, default=[512, 512], metavar="H1,H2,...",
                   help="hidden layer sizes (default: 512,512)")
    t.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "gelu", "leaky_relu"])
    t.add_argument("--dropout", type=_fraction, default=0.2, help="dropout after each hidden layer (default: 0.2)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=_non_negative_float, default=None,
                   help="learning rate (default: 0.01 for sgd, 0.001 for adam)")
    t.add_argument("--momentum", type=_non_negative_float, default=0.0, help="SGD momentum (default: 0)")
    t.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    t.add_argument("--batch-size", type=_positive_int, default=20,
                   help="samples per step; under mpiexec -n N, per process (each step then averages N batches; "
                        "see docs/distributed.md)")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="share of the training images held out for validation (default: 0.2)")
    t.add_argument("--normalize", action="store_true", help="standardise pixels with the dataset's mean and std")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--checkpoint", default="model.pt", help="where to save the best model (default: model.pt)")
    t.add_argument("--resume", default=None, metavar="STATE",
                   help="continue the run that wrote the training state STATE (each run writes one after every "
                        "epoch, beside the checkpoint: model.pt -> model-state.pt); give the same options again")
    t.add_argument("--patience", type=_non_negative_int, default=None,
                   help="stop after this many epochs without improvement (default: never)")
    t.add_argument("--plot", default=None, metavar="PNG",
                   help="history plot (default: <checkpoint>-history.png; '' for none)")
    t.add_argument("--no-plot", dest="plot", action="store_const", const="", help="do not write the history plot")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for the kernels")
    t.add_argument("--precision", choices=["32", "bf16"], default="32",
                   help="32: float32 (default); bf16: the Linear layers' products on bfloat16-rounded operands "
                        "with float32 accumulation, weights and checkpoints float32 (CPU only)")
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
    e.add_argument("--data-file", metavar="FILE", default=None,
                   help="for a model trained on a table: the table to evaluate on (same columns; the checkpoint's "
                        "standardisation is applied)")
    e.add_argument("--target", metavar="COLUMN", default=None,
                   help="with --data-file: the target column (default: the one the model was trained on)")
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="predictions of a model trained on a table, for the rows of a table",
                        description="Apply a model trained with --data-file to the rows of TABLE (the same feature "
                                    "columns; others are ignored), with the checkpoint's standardisation, and write "
                                    "CSV: the predicted class and each class's probability, or the predicted value.")
    pr.add_argument("checkpoint", help="a checkpoint written by fastmlp train --data-file")
    pr.add_argument("table", help="CSV, .npz, .npy or Parquet file with the feature columns")
    pr.add_argument("-o", "--output", default="-", metavar="CSV", help="where to write (default: standard output)")
    pr.add_argument("--batch-size", type=_positive_int, default=4096)
    pr.set_defaults(func=_cmd_predict)

    x = sub.add_parser("export", help="write a trained model as an ONNX file",
                       description="Write the MLP of CHECKPOINT as an ONNX model with a dynamic batch size; a model "
                                   "trained on a table takes the raw features (its standardisation is part of the "
                                   "graph). Needs the onnx package (pip install \"fastmlp[onnx]\").")
    x.add_argument("checkpoint", help="a checkpoint written by fastmlp train (or a state_dict of an MLP)")
    x.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    x.set_defaults(func=_cmd_export)

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
    except BrokenPipeError:  # `fastmlp predict ... | head`: the reader is gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
