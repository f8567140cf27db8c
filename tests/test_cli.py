"""The command line: `fastmlp train`, `fastmlp evaluate`, `fastmlp bench`, on small MNIST-format files
written here (the real-MNIST accuracy is tested in tests/train)."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import cli
from fastmlp.datasets import MNIST, FashionMNIST
from fastmlp.train.mlp import build_mlp, mlp_checkpoint_extra


def write_idx_gz(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + a.astype(np.uint8).tobytes())


def learnable_split(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label is written as a bright band in row 2*label, so a small MLP can learn them."""
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label: 2 * label + 2, :] = 250
    return x, y


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    for prefix, n in (("train", 200), ("t10k", 60)):
        x, y = learnable_split(n, rng)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return folder


def train_args(data, tmp_path, *extra):
    return ["train", "--data", str(data), "--hidden", "32", "--epochs", "3", "--batch-size", "10",
            "--optimizer", "adam", "--checkpoint", str(tmp_path / "ck.pt"), "--no-progress", "--no-download",
            "--plot", str(tmp_path / "history.png"), *extra]


def test_train_prints_epochs_checkpoints_and_the_per_class_table(mnist_dir, tmp_path, capsys):
    assert cli.main(train_args(mnist_dir, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "Linear(in_features=784, out_features=32, bias=True)" in out
    assert "160 training, 40 validation, 60 test images" in out
    for e in (1, 2, 3):
        assert f"epoch {e}/3  train_loss " in out
    assert "Validation loss decreased (inf --> " in out and "Saving model ..." in out
    assert "Test Loss: " in out and "Test Accuracy of     0: " in out and "Test Accuracy (Overall): " in out
    assert "Test accuracy: " in out
    ckpt = fastmlp.load(tmp_path / "ck.pt")
    assert ckpt["arch"] == {"in_features": 784, "hidden": [32], "out_features": 10, "activation": "relu",
                            "dropout": 0.2}
    assert ckpt["dataset"] == "mnist" and 1 <= ckpt["epoch"] <= 3
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "history.png").exists()
    else:
        assert f"History plot: {tmp_path / 'history.png'}" in out
        assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_a_checkpoint_reports_the_same_test_accuracy(mnist_dir, tmp_path, capsys):
    cli.main(train_args(mnist_dir, tmp_path, "--no-plot"))
    trained = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Test accuracy: ")]
    assert cli.main(["evaluate", str(tmp_path / "ck.pt"), "--data", str(mnist_dir), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "MLP 784-32-10 (relu) on the MNIST test set" in out
    assert [ln for ln in out.splitlines() if ln.startswith("Test accuracy: ")] == trained


def test_training_learns_the_easy_problem(mnist_dir, tmp_path, capsys):
    assert cli.main(train_args(mnist_dir, tmp_path, "--epochs", "6", "--no-plot")) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Test accuracy: ")][0]
    assert float(line.split()[2].rstrip("%")) > 80


def test_early_stopping_and_sgd_options(mnist_dir, tmp_path, capsys):
    rc = cli.main(train_args(mnist_dir, tmp_path, "--optimizer", "sgd", "--lr", "0", "--momentum", "0.9",
                             "--patience", "1", "--epochs", "5", "--no-plot"))
    assert rc == 0
    out = capsys.readouterr().out
    assert "early stopping" in out and "epoch 3/5" not in out


def test_without_validation_the_training_loss_picks_the_checkpoint(mnist_dir, tmp_path, capsys):
    assert cli.main(train_args(mnist_dir, tmp_path, "--val-fraction", "0", "--epochs", "2", "--no-plot")) == 0
    out = capsys.readouterr().out
    assert "200 training, 0 validation" in out and "train_loss decreased (inf --> " in out
    assert "val_loss" not in out


def test_fashion_mnist_report_uses_class_names(tmp_path, capsys):
    rng = np.random.default_rng(1)
    folder = tmp_path / "data" / "FashionMNIST" / "raw"
    for prefix, n in (("train", 50), ("t10k", 30)):
        x, y = learnable_split(n, rng)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    args = train_args(tmp_path / "data", tmp_path, "--dataset", "fashion-mnist", "--epochs", "1", "--no-plot")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Test Accuracy of Ankle boot: " in out and FashionMNIST.classes[0] in out


def test_fashion_mnist_on_a_folder_of_mnist_files_is_a_clear_error(mnist_dir, tmp_path, capsys, monkeypatch):
    import hashlib

    monkeypatch.setattr(MNIST, "resources", {p.name: ((hashlib.md5(p.read_bytes()).hexdigest(),), ())
                                             for p in mnist_dir.iterdir()})
    args = train_args(mnist_dir, tmp_path, "--dataset", "fashion-mnist", "--no-plot")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastmlp train: error: FashionMNIST training images not found: "
                          f"'{mnist_dir / 'train-images-idx3-ubyte.gz'}' is MNIST's file")
    assert str(mnist_dir / "FashionMNIST" / "raw") in err
    assert cli.main(train_args(mnist_dir, tmp_path, "--epochs", "1", "--no-plot")) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "ck.pt"), "--data", str(mnist_dir), "--no-download",
                     "--dataset", "fashion-mnist"]) == 2
    assert "FashionMNIST test images not found: " in capsys.readouterr().err


def test_missing_data_explains_how_to_provide_it(tmp_path, capsys):
    rc = cli.main(["train", "--data", str(tmp_path / "empty"), "--no-download", "--epochs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("fastmlp train: error: MNIST training images not found")
    assert "FASTMLP_DATA" in err and "--data FOLDER" in err and "train-images-idx3-ubyte.gz" in err
    assert "leave out --no-download" in err


def test_unreachable_mirrors_explain_how_to_provide_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "offline").as_uri() + "/"])
    rc = cli.main(["train", "--data", str(tmp_path / "d"), "--epochs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "could not download train-images-idx3-ubyte.gz" in err and "FASTMLP_DATA" in err
    assert "download them yourself" in err


def test_data_folder_defaults_to_fastmlp_data(mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTMLP_DATA", str(mnist_dir))
    args = [a for a in train_args(mnist_dir, tmp_path, "--epochs", "1", "--no-plot")]
    i = args.index("--data")
    del args[i:i + 2]
    assert cli.main(args) == 0
    assert f"from {mnist_dir}" in capsys.readouterr().out


def test_evaluate_rejects_a_checkpoint_for_another_problem(mnist_dir, tmp_path, capsys):
    arch = {"in_features": 784, "hidden": [8], "out_features": 5}
    fastmlp.save({**mlp_checkpoint_extra(arch), "state_dict": build_mlp(**arch).state_dict()}, tmp_path / "m5.pt")
    assert cli.main(["evaluate", str(tmp_path / "m5.pt"), "--data", str(mnist_dir), "--no-download"]) == 2
    assert "has 5 outputs but MNIST has 10 classes" in capsys.readouterr().err
    fastmlp.save(build_mlp(100, [8], 10).state_dict(), tmp_path / "small.pt")
    assert cli.main(["evaluate", str(tmp_path / "small.pt"), "--data", str(mnist_dir)]) == 2
    assert "a model for 100 inputs" in capsys.readouterr().err


def test_evaluate_inconsistent_checkpoint_names_keys_and_shapes(mnist_dir, tmp_path, capsys):
    arch = {"in_features": 784, "hidden": [16], "out_features": 10}
    fastmlp.save({**mlp_checkpoint_extra(arch), "state_dict": build_mlp(784, [32], 10).state_dict()},
                 tmp_path / "bad.pt")
    assert cli.main(["evaluate", str(tmp_path / "bad.pt"), "--data", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert "'0.weight': checkpoint [32, 784] vs model [16, 784]" in err


def test_unusable_device_is_a_clear_error(mnist_dir, tmp_path, capsys):
    assert cli.main(train_args(mnist_dir, tmp_path, "--device", "tpu")) == 2
    assert "--device tpu: unknown device type 'tpu'" in capsys.readouterr().err
    if not fastmlp.cuda.is_available():
        assert cli.main(train_args(mnist_dir, tmp_path, "--device", "cuda")) == 2
        assert "--device cuda: CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "trailing", "pytorch", "empty"])
def test_evaluate_unreadable_checkpoint_is_a_clean_error(mnist_dir, tmp_path, capsys, damage):
    path = tmp_path / "bad.pt"
    fastmlp.save({**mlp_checkpoint_extra({"in_features": 784, "hidden": [8], "out_features": 10}),
                  "state_dict": build_mlp(784, [8], 10).state_dict()}, path)
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[:len(raw) // 2], "trailing": raw + b"junk", "empty": b"",
                      "pytorch": b"PK\x03\x04" + raw[4:]}[damage])
    assert cli.main(["evaluate", str(path), "--data", str(mnist_dir), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastmlp evaluate: error: fastmlp.load('{path}'): ")
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    expected = {"truncated": "truncated", "trailing": "trailing data", "empty": "truncated",
                "pytorch": "does not load pickle files"}[damage]
    assert expected in err


def test_evaluate_checkpoint_without_a_usable_architecture(mnist_dir, tmp_path, capsys):
    fastmlp.save({"format": "fastmlp.mlp/1", "arch": {"hidden": [8], "out_features": 10},
                  "state_dict": build_mlp(784, [8], 10).state_dict()}, tmp_path / "odd.pt")
    assert cli.main(["evaluate", str(tmp_path / "odd.pt"), "--data", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastmlp evaluate: error: checkpoint '{tmp_path / 'odd.pt'}' does not describe an MLP")


def test_train_help_shows_a_single_percent_sign(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "%%" not in out and "20% validation" in " ".join(out.split())


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nope.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_ctrl_c_keeps_the_checkpoint_and_still_reports(mnist_dir, tmp_path, capsys, monkeypatch):
    from fastmlp.train import loop

    real = loop._train_epoch
    calls = []

    def interrupt_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "_train_epoch", interrupt_second_epoch)
    assert cli.main(train_args(mnist_dir, tmp_path, "--no-plot")) == 130
    out = capsys.readouterr().out
    assert "Interrupted after 1 complete epoch(s)." in out and "(epoch 1)" in out and "Test accuracy: " in out
    assert fastmlp.load(tmp_path / "ck.pt")["epoch"] == 1


@pytest.mark.parametrize("name,option", [("kernels", "--quick"), ("step", "--steps"), ("train", "--configs")])
def test_bench_runs_the_benchmark_script(capfd, name, option):
    """`fastmlp bench NAME` runs the benchmark in a fresh interpreter with the thread-pool settings."""
    assert cli.main(["bench", name, "--help"]) == 0
    assert option in capfd.readouterr().out


def test_bench_unknown_name(capsys):
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'; choose from kernels, step, train" in capsys.readouterr().err
    assert cli.main(["bench", "all", "--quick"]) == 2
    assert "bench all runs each benchmark with its default settings" in capsys.readouterr().err


def test_bench_without_a_name_lists_the_benchmarks(capsys):
    assert cli.main(["bench"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["kernels", "step", "train", "all"]
    assert "fastmlp bench NAME --help" in out


def test_bench_help_lists_the_names(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    for name in ("kernels", "step", "train", "all"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_bench_all_runs_each_benchmark_in_turn(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "_benchmarks_package", lambda: None)
    monkeypatch.setattr(cli, "_run_benchmark", lambda pkg, name, argv: ran.append((name, argv)) or 0)
    assert cli.main(["bench", "all"]) == 0
    assert ran == [("kernels", []), ("step", []), ("train", [])]
    assert "== fastmlp bench step ==" in capsys.readouterr().out


def test_benchmarks_set_quiet_thread_pools():
    code = "import common, os; print(os.environ['GOMP_SPINCOUNT'], os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")}
    bench_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    out = subprocess.run([sys.executable, "-c", code], cwd=bench_dir, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["20000", "4"], out.stderr


def test_python_dash_m_fastmlp_train(mnist_dir, tmp_path):
    env = dict(os.environ, FASTMLP_DATA=str(mnist_dir))
    out = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--hidden", "16", "--epochs", "1",
                          "--batch-size", "20", "--checkpoint", str(tmp_path / "m.pt"), "--no-plot"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert "epoch 1/1" in out.stdout and "Test Accuracy (Overall)" in out.stdout
    assert out.stderr == ""  # no progress bar: stderr is not a terminal


def test_info_is_still_there(capsys):
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().out.startswith(f"fastmlp {fastmlp.__version__}")


@pytest.mark.parametrize("option,value,expected", [
    ("--lr", "-1", "argument --lr: must be a number >= 0; got -1"),
    ("--lr", "nan", "argument --lr: must be a finite number; got nan"),
    ("--lr", "fast", "argument --lr: must be a number; got 'fast'"),
    ("--patience", "-1", "argument --patience: must be an integer >= 0; got -1"),
    ("--patience", "1.5", "argument --patience: must be an integer; got '1.5'"),
    ("--momentum", "-0.5", "argument --momentum: must be a number >= 0; got -0.5"),
    ("--weight-decay", "-0.001", "argument --weight-decay: must be a number >= 0; got -0.001"),
    ("--seed", str(2 ** 70), f"argument --seed: must fit in 64 bits; got {2 ** 70}"),
    ("--batch-size", "0", "argument --batch-size: must be a positive integer; got 0"),
    ("--epochs", "-3", "argument --epochs: must be a positive integer; got -3"),
    ("--threads", "two", "argument --threads: must be an integer; got 'two'"),
    ("--dropout", "1.5", "argument --dropout: must be in [0, 1); got 1.5"),
    ("--val-fraction", "1", "argument --val-fraction: must be in [0, 1); got 1"),
    ("--hidden", "0", "argument --hidden: hidden sizes must be positive; got '0'"),
    ("--optimizer", "lbfgs", "argument --optimizer: invalid choice: 'lbfgs'"),
])
def test_a_bad_option_is_one_line_and_exit_status_2(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--data", str(tmp_path), "--no-download", option, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastmlp train: error: {expected}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_options_from_a_shell_give_one_line_and_status_2(tmp_path):
    for args in (["--lr", "-1"], ["--patience", "-1"]):
        out = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--data", str(tmp_path), "--no-download",
                              *args], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir(),
                             env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastmlp.__file__))))
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("fastmlp train: error: argument " + args[0])
