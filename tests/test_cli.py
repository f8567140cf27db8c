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


def test_training_in_bf16_learns_it_too_and_saves_float32(mnist_dir, tmp_path, capsys):
    assert cli.main(train_args(mnist_dir, tmp_path, "--epochs", "6", "--no-plot", "--precision", "bf16")) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Test accuracy: ")][0]
    assert float(line.split()[2].rstrip("%")) > 80
    ckpt = fastmlp.load(tmp_path / "ck.pt")
    tensors = list(ckpt["state_dict"].values())
    assert len(tensors) == 4 and all(v.dtype == fastmlp.float32 for v in tensors)
    with pytest.raises(SystemExit):
        cli.main(train_args(mnist_dir, tmp_path, "--precision", "fp16"))


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


# ---- tables of your own: train --data-file, evaluate, predict, export -------------------------------------------
def write_table(path, n=400, seed=0, kind="classification"):
    """Four features on very different scales; the label (or value) is a simple function of them."""
    import csv

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)) * [1, 5, 100, 0.1] + [0, 10, 500, 0]
    score = x[:, 0] + (x[:, 1] - 10) / 5 - (x[:, 2] - 500) / 100
    if kind == "classification":
        target = np.where(score > 0, "yes", "no")
    else:
        target = 3 * x[:, 0] + 0.2 * x[:, 1] + 0.01 * x[:, 2]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "y"])
        for row, t in zip(x, target):
            w.writerow([*(f"{v:.6f}" for v in row), t if kind == "classification" else f"{t:.6f}"])
    return np.array([[float(f"{v:.6f}") for v in row] for row in x], dtype=np.float32), target


def table_args(data, tmp_path, *extra):
    return ["train", "--data-file", str(data), "--target", "y", "--hidden", "16", "--epochs", "10",
            "--batch-size", "16", "--optimizer", "adam", "--lr", "0.01", "--checkpoint", str(tmp_path / "t.pt"),
            "--no-progress", "--no-plot", *extra]


def forward_float64(state_dict, x):
    """The MLP a-ReLU-b of the state dict, in float64 NumPy."""
    w0, b0 = state_dict["0.weight"].astype(np.float64), state_dict["0.bias"].astype(np.float64)
    keys = sorted({k.split(".")[0] for k in state_dict}, key=int)
    w1, b1 = (state_dict[f"{keys[-1]}.{p}"].astype(np.float64) for p in ("weight", "bias"))
    return np.maximum(x @ w0.T + b0, 0) @ w1.T + b1


def test_train_on_a_csv_table_then_predict_and_evaluate_with_the_same_preprocessing(tmp_path, capsys):
    st_numpy = pytest.importorskip("safetensors.numpy")
    x, labels = write_table(tmp_path / "t.csv")
    assert cli.main(table_args(tmp_path / "t.csv", tmp_path, "--val-fraction", "0", "--dropout", "0")) == 0
    out = capsys.readouterr().out
    assert "400 training and 0 validation rows, 4 features, target 'y' (2 classes)" in out
    accuracy = float([ln for ln in out.splitlines() if ln.startswith("Training accuracy: ")][0].split()[2][:-1])
    assert accuracy > 90
    ck = fastmlp.load(tmp_path / "t.pt")
    assert ck["classes"] == ["no", "yes"] and ck["table"]["features"] == ["a", "b", "c", "d"]
    # standardisation fitted on the training rows (all of them here), stored exactly
    np.testing.assert_allclose(ck["table"]["standardize"]["mean"], x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(ck["table"]["standardize"]["std"], x.astype(np.float64).std(0), rtol=1e-12)
    # a PyTorch user reads the weights under their state-dict names, and nothing else
    plain = st_numpy.load_file(str(tmp_path / "t.pt"))
    assert sorted(plain) == ["0.bias", "0.weight", "2.bias", "2.weight"]

    assert cli.main(["predict", str(tmp_path / "t.pt"), str(tmp_path / "t.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    assert "400 predictions of 'y' written to" in capsys.readouterr().out
    import csv

    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction", "p_no", "p_yes"]
    z = (x - np.array(ck["table"]["standardize"]["mean"])) / np.array(ck["table"]["standardize"]["std"])
    logits = forward_float64(plain, z)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), prob, atol=2e-5)
    predicted = [r[0] for r in rows[1:]]
    assert predicted == [["no", "yes"][k] for k in logits.argmax(1)]

    assert cli.main(["evaluate", str(tmp_path / "t.pt"), "--data-file", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    expected = 100 * np.mean(np.array(predicted) == labels)
    assert f"Test accuracy: {expected:.2f}%" in out and "Test Accuracy of   yes: " in out


def test_regression_reports_r2_and_predicts_in_the_targets_units(tmp_path, capsys):
    x, values = write_table(tmp_path / "r.csv", kind="regression")
    assert cli.main(table_args(tmp_path / "r.csv", tmp_path, "--task", "regression", "--epochs", "30",
                               "--dropout", "0")) == 0
    out = capsys.readouterr().out
    r2 = float([ln for ln in out.splitlines() if ln.startswith("Validation R²: ")][0].split()[-1])
    assert r2 > 0.95
    assert cli.main(["predict", str(tmp_path / "t.pt"), str(tmp_path / "r.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    pred = np.loadtxt(tmp_path / "p.csv", skiprows=1)
    ss = np.sum((pred - values) ** 2)
    assert 1 - ss / np.sum((values - values.mean()) ** 2) > 0.95
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "t.pt"), "--data-file", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    mse = float([ln for ln in out.splitlines() if ln.startswith("Test MSE: ")][0].split()[-1])
    np.testing.assert_allclose(mse, ss / len(values), rtol=1e-4)


def test_export_of_a_table_model_takes_raw_features(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x, values = write_table(tmp_path / "r.csv", kind="regression")
    assert cli.main(table_args(tmp_path / "r.csv", tmp_path, "--task", "regression", "--epochs", "2")) == 0
    assert cli.main(["predict", str(tmp_path / "t.pt"), str(tmp_path / "r.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    assert cli.main(["export", str(tmp_path / "t.pt"), str(tmp_path / "t.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input 'input' [batch, 4]: 4 raw features (a, b, c, d); standardised inside the model" in out
    session = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": x})
    np.testing.assert_allclose(onnx_out[:, 0], np.loadtxt(tmp_path / "p.csv", skiprows=1), rtol=1e-5, atol=1e-4)


def test_export_of_an_mnist_checkpoint_matches_fastmlp(mnist_dir, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert cli.main(train_args(mnist_dir, tmp_path, "--epochs", "1", "--no-plot", "--normalize")) == 0
    assert cli.main(["export", str(tmp_path / "ck.pt"), str(tmp_path / "m.onnx")]) == 0
    assert "input 'input' [batch, 784]" in capsys.readouterr().out
    from fastmlp.train.mlp import load_mlp_checkpoint

    model, info = load_mlp_checkpoint(tmp_path / "ck.pt")
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    mean, std = info["normalize"]
    with fastmlp.no_grad():
        expected = model(fastmlp.tensor((x - mean) / std)).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_npz_tables_train(tmp_path, capsys):
    x, labels = write_table(tmp_path / "t.csv")
    np.savez(tmp_path / "t.npz", X=x, label=(labels == "yes").astype(np.int64))
    args = table_args(tmp_path / "t.npz", tmp_path, "--epochs", "2")
    args[args.index("--target") + 1] = "label"
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "320 training and 80 validation rows, 4 features, target 'label' (2 classes)" in out
    assert fastmlp.load(tmp_path / "t.pt")["classes"] == [0, 1]


@pytest.mark.parametrize("content,args,message", [
    ("a,b,y\n1,2,0\n", ["--target", "label"], "has no column 'label' (the --target); its columns are: a, b, y"),
    ("a,b,y\n1,2,0\n1,x,1\n", [], "data row 2 (line 3), column 'b' is 'x', not a number"),
    ("a,b,y\n1,2,0\n1,nan,1\n", [], "data row 2 (line 3), column 'b' is nan"),
    ("", [], "is empty"),
    ("a,b,y\n1,2,0.5\n1,3,1.5\n", [], "pass --task regression"),
    ("a,b,y\n1,2,x\n1,3,z\n", ["--task", "regression"], "--task regression needs a numeric target"),
])
def test_bad_tables_are_one_line_errors(tmp_path, capsys, content, args, message):
    (tmp_path / "bad.csv").write_text(content)
    assert cli.main(table_args(tmp_path / "bad.csv", tmp_path, *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastmlp train: error: ") and message in err and err.count("\n") == 1


def test_table_options_that_do_not_fit(mnist_dir, tmp_path, capsys):
    write_table(tmp_path / "t.csv")
    args = table_args(tmp_path / "t.csv", tmp_path)
    del args[args.index("--target"):args.index("--target") + 2]
    assert cli.main(args) == 2
    assert "--data-file needs --target COLUMN" in capsys.readouterr().err
    assert cli.main(train_args(mnist_dir, tmp_path, "--target", "y")) == 2
    assert "--target and --task go with --data-file" in capsys.readouterr().err
    assert cli.main(train_args(mnist_dir, tmp_path, "--epochs", "1", "--no-plot")) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(tmp_path / "ck.pt"), str(tmp_path / "t.csv")]) == 2
    assert "was not trained on a table" in capsys.readouterr().err
    assert cli.main(table_args(tmp_path / "t.csv", tmp_path, "--epochs", "1")) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "t.pt")]) == 2
    assert "was trained on a table (t.csv); pass --data-file" in capsys.readouterr().err
    (tmp_path / "other.csv").write_text("a,b,y\n1,2,yes\n")
    assert cli.main(["predict", str(tmp_path / "t.pt"), str(tmp_path / "other.csv")]) == 2
    assert "has no column 'c', a feature the model was trained on" in capsys.readouterr().err
