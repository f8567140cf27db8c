"""fastmlp.save / fastmlp.load: round trips, no pickle, clear errors for damaged files, atomic saves."""
from __future__ import annotations

import os
import stat
import struct
from collections import OrderedDict

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim


def make_model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))


def test_model_and_optimizer_state_round_trip(tmp_path):
    model = make_model()
    opt = optim.AdamW(model.parameters(), lr=0.01)
    model(fastmlp.randn(5, 4)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    fastmlp.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "note": "best",
                  "history": [0.5, 0.25], "shape": (2, 3)}, path)
    ck = fastmlp.load(path)
    assert ck["epoch"] == 3 and ck["note"] == "best" and ck["history"] == [0.5, 0.25] and ck["shape"] == (2, 3)
    assert isinstance(ck["model"], OrderedDict) and list(ck["model"]) == list(model.state_dict())
    other = make_model()
    other.load_state_dict(ck["model"])
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert ck["model"]["2.num_batches_tracked"].dtype == fastmlp.int64
    opt2 = optim.AdamW(other.parameters(), lr=0.5)
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.01
    assert set(ck["optimizer"]["state"].keys()) == {0, 1, 2, 3, 4, 5}


def test_single_tensor_and_dtypes(tmp_path):
    for t in [fastmlp.randn(3, 4), fastmlp.arange(5), fastmlp.tensor([True, False]), fastmlp.zeros(0, 2),
              fastmlp.tensor(2.5, dtype=fastmlp.float64)]:
        fastmlp.save(t, tmp_path / "t.pt")
        back = fastmlp.load(tmp_path / "t.pt")
        assert back.dtype == t.dtype and back.shape == t.shape
        np.testing.assert_array_equal(back.numpy(), t.numpy())


def test_file_is_safetensors_readable_by_a_plain_parser(tmp_path):
    fastmlp.save({"w": fastmlp.ones(2, 2)}, tmp_path / "x.safetensors")
    raw = (tmp_path / "x.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    import json

    header = json.loads(raw[8:8 + n])
    entry = header["w"]
    assert entry["dtype"] == "F32" and entry["shape"] == [2, 2] and entry["data_offsets"] == [0, 16]
    np.testing.assert_array_equal(np.frombuffer(raw[8 + n:8 + n + 16], np.float32), np.ones(4))


def test_refuses_objects_that_need_pickle(tmp_path):
    with pytest.raises(TypeError, match="save model.state_dict"):
        fastmlp.save(make_model(), tmp_path / "m.pt")
    with pytest.raises(TypeError, match="can't save an object of type object"):
        fastmlp.save({"x": object()}, tmp_path / "m.pt")


def test_truncated_file_raises_naming_it(tmp_path):
    path = tmp_path / "ckpt.pt"
    fastmlp.save(make_model().state_dict(), path)
    raw = path.read_bytes()
    for cut in (4, 20, len(raw) - 10):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=r"ckpt.pt.*truncated"):
            fastmlp.load(path)


def test_corrupted_file_raises(tmp_path):
    path = tmp_path / "ckpt.pt"
    fastmlp.save({"w": fastmlp.randn(10, 10)}, path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted \\(checksum mismatch\\)"):
        fastmlp.load(path)
    fastmlp.save({"w": fastmlp.randn(10, 10)}, path)
    raw = bytearray(path.read_bytes())
    raw[8] = ord("#")  # the header's opening brace
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="header is corrupted"):
        fastmlp.load(path)
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04\x95 definitely not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        fastmlp.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        fastmlp.load(tmp_path / "missing.pt")


def test_crash_during_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    fastmlp.save({"w": fastmlp.ones(3)}, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        fastmlp.save({"w": fastmlp.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind
    np.testing.assert_array_equal(fastmlp.load(path)["w"].numpy(), np.ones(3))


def test_saved_file_gets_the_usual_mode(tmp_path):
    """A new file gets 0o666 less the umask, as open() would make it; an overwrite keeps the old mode."""
    old = os.umask(0o027)
    try:
        path = tmp_path / "m.safetensors"
        fastmlp.save({"w": fastmlp.zeros(3)}, str(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        os.chmod(path, 0o604)
        fastmlp.save({"w": fastmlp.ones(3)}, str(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o604
    finally:
        os.umask(old)


# ---- file objects, trailing data, PyTorch checkpoints ------------------------------------------------
def test_file_objects_round_trip_like_torch(tmp_path):
    import io

    sd = make_model().state_dict()
    buf = io.BytesIO()
    fastmlp.save({"model": sd, "epoch": 2}, buf)
    buf.seek(0)
    back = fastmlp.load(buf)
    assert back["epoch"] == 2 and list(back["model"]) == list(sd)
    for a, b in zip(sd.values(), back["model"].values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(tmp_path / "f.pt", "wb") as f:
        f.write(b"prefix")
        fastmlp.save(fastmlp.arange(4), f)
    with open(tmp_path / "f.pt", "rb") as f:
        assert f.read(6) == b"prefix"
        assert fastmlp.load(f).tolist() == [0, 1, 2, 3]  # read from the file's position, as torch.load does
    assert (tmp_path / "f.pt").read_bytes()[6:] == _bytes_of(fastmlp.arange(4))


def _bytes_of(obj) -> bytes:
    import io

    buf = io.BytesIO()
    fastmlp.save(obj, buf)
    return buf.getvalue()


def test_file_objects_must_be_binary(tmp_path):
    with open(tmp_path / "t.txt", "w") as f:
        with pytest.raises(TypeError, match="binary file object"):
            fastmlp.save(fastmlp.ones(2), f)
    (tmp_path / "t.txt").write_bytes(_bytes_of(fastmlp.ones(2)))
    with open(tmp_path / "t.txt", "r", encoding="latin-1") as f:
        with pytest.raises(TypeError, match="binary mode"):
            fastmlp.load(f)
    with pytest.raises(TypeError, match="a path or a binary file object"):
        fastmlp.load(42)


def test_trailing_data_is_an_error(tmp_path):
    import io

    path = tmp_path / "ckpt.pt"
    fastmlp.save({"w": fastmlp.ones(3)}, path)
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    with pytest.raises(fastmlp.serialization.CheckpointError,
                       match=r"ckpt.pt.*corrupted or has trailing data: 4 bytes follow the 12 bytes"):
        fastmlp.load(path)
    two = _bytes_of({"w": fastmlp.ones(3)}) + _bytes_of({"w": fastmlp.zeros(3)})
    with pytest.raises(ValueError, match="trailing data"):
        fastmlp.load(io.BytesIO(two))
    with pytest.raises(ValueError, match="trailing data"):
        fastmlp.load(io.BytesIO(_bytes_of({}) + b"x"))


def test_header_length_that_starts_like_a_pickle_still_loads(tmp_path):
    """A safetensors header of 128 (+256k) bytes makes the file start with byte 0x80, like a pickle."""
    import json

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (128 - len(header))
    raw = struct.pack("<Q", 128) + header + np.array([1.5, 2.5], np.float32).tobytes()
    assert raw[0] == 0x80
    (tmp_path / "x.safetensors").write_bytes(raw)
    assert fastmlp.load(tmp_path / "x.safetensors")["w"].tolist() == [1.5, 2.5]


class _RunsCode:
    """Unpickling this would create a file; loading must never do it."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_files_are_refused_without_running_them(tmp_path, protocol):
    import pickle

    marker = tmp_path / "pwned"
    _RunsCode.target = str(marker)
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"w": _RunsCode()}, protocol=protocol))
    with pytest.raises(fastmlp.serialization.CheckpointError) as e:
        fastmlp.load(path)
    msg = str(e.value)
    assert "legacy.pt" in msg and "pickle" in msg and "can run arbitrary code" in msg
    assert "safetensors" in msg and "torch.load" in msg
    assert not marker.exists()


def test_pytorch_zip_checkpoint_is_refused_with_a_conversion_hint(tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValueError) as e:
        fastmlp.load(path)
    msg = str(e.value)
    assert f"fastmlp.load('{path}')" in msg and "torch.save" in msg and "can run arbitrary code" in msg
    assert "save_file" in msg and "'model.safetensors'" in msg


def test_a_real_torch_save_file_is_refused_and_the_hint_converts_it(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    torch.save(model.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name in ("m.pt", "old.pt"):
        with pytest.raises(ValueError, match="fastmlp does not load pickle files"):
            fastmlp.load(tmp_path / name)
    with open(tmp_path / "m.pt", "rb") as f:
        with pytest.raises(ValueError, match="a zip archive, the format of torch.save"):
            fastmlp.load(f)
    try:
        from safetensors.torch import save_file
    except ImportError:
        return
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
    back = fastmlp.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back["weight"].numpy(), model.weight.detach().numpy())


# ---- interoperability: the file is a plain safetensors file keyed by the state-dict names ------------------
def torch_twin(torch):
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))


def trained_model():
    """make_model() after a training step, so the BatchNorm running statistics are not their defaults."""
    fastmlp.manual_seed(3)
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    model(fastmlp.randn(16, 4)).sum().backward()
    opt.step()
    return model.eval()


def test_a_state_dict_file_is_read_by_safetensors_under_its_own_keys(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    model = trained_model()
    sd = model.state_dict()
    fastmlp.save(sd, tmp_path / "m.safetensors")
    plain = st_numpy.load_file(str(tmp_path / "m.safetensors"))
    assert sorted(plain) == sorted(sd)
    for k, v in sd.items():
        assert plain[k].dtype == v.numpy().dtype
        np.testing.assert_array_equal(plain[k], v.numpy())


def test_pytorch_loads_the_state_dict_file_into_the_same_model(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    model = trained_model()
    fastmlp.save(model.state_dict(), tmp_path / "m.safetensors")
    twin = torch_twin(torch)
    twin.load_state_dict(st_torch.load_file(str(tmp_path / "m.safetensors")), strict=True)
    twin.eval()
    x = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(model(fastmlp.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_pytorch_state_dict_saved_by_safetensors_loads_into_fastmlp(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    twin = torch_twin(torch)
    twin.train()
    twin(torch.randn(16, 4))  # move the running statistics
    twin.eval()
    st_torch.save_file(twin.state_dict(), str(tmp_path / "t.safetensors"))
    model = make_model()
    model.load_state_dict(fastmlp.load(tmp_path / "t.safetensors"))
    model.eval()
    x = np.random.default_rng(1).standard_normal((9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(model(fastmlp.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert model.state_dict()["2.num_batches_tracked"].item() == 1


def test_round_trip_fastmlp_safetensors_pytorch_safetensors_fastmlp_is_exact(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    model = trained_model()
    fastmlp.save(model.state_dict(), tmp_path / "a.safetensors")
    twin = torch_twin(torch)
    twin.load_state_dict(st_torch.load_file(str(tmp_path / "a.safetensors")))
    st_torch.save_file(twin.state_dict(), str(tmp_path / "b.safetensors"))
    back = make_model()
    back.load_state_dict(fastmlp.load(tmp_path / "b.safetensors"))
    worst = max(float(np.max(np.abs(a.numpy().astype(np.float64) - b.numpy().astype(np.float64))))
                for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    assert worst == 0.0


def test_a_checkpoint_record_names_its_state_dict_tensors_by_their_keys(tmp_path):
    """What ModelCheckpoint and `fastmlp train` write: the weights keep their state-dict names, the
    optimizer state gets dotted paths, and fastmlp.load still gives back the whole nested record."""
    st_numpy = pytest.importorskip("safetensors.numpy")
    model = trained_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(fastmlp.randn(5, 4)).sum().backward()
    opt.step()
    record = {"format": "fastmlp.mlp/1", "arch": {"hidden": [8]}, "state_dict": model.state_dict(),
              "optimizer": opt.state_dict(), "epoch": 4}
    fastmlp.save(record, tmp_path / "ck.pt")
    plain = st_numpy.load_file(str(tmp_path / "ck.pt"))
    assert set(model.state_dict()) <= set(plain)
    assert set(plain) - set(model.state_dict()) == {f"optimizer.state.{i}.{k}" for i in range(6)
                                                   for k in ("exp_avg", "exp_avg_sq", "step")}
    np.testing.assert_array_equal(plain["optimizer.state.0.exp_avg"],
                                  opt.state_dict()["state"][0]["exp_avg"].numpy())
    back = fastmlp.load(tmp_path / "ck.pt")
    assert back["epoch"] == 4 and back["arch"] == {"hidden": [8]} and list(back["state_dict"]) == list(
        model.state_dict())
    np.testing.assert_array_equal(back["optimizer"]["state"][3]["exp_avg_sq"].numpy(),
                                  opt.state_dict()["state"][3]["exp_avg_sq"].numpy())


def test_names_that_would_clash_fall_back_to_the_full_path(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    a, b, c, d = (fastmlp.full((2,), float(i)) for i in range(4))
    obj = {"state_dict": {"w": a, "x.y": c, "v": d}, "w": b, "x": {"y": d}, "t": [a, (b,)], "x.y": c}
    fastmlp.save(obj, tmp_path / "c.safetensors")
    plain = st_numpy.load_file(str(tmp_path / "c.safetensors"))
    assert sorted(plain) == ["state_dict.w", "state_dict.x.y", "t.0", "t.1.0", "v", "w", "x.y", "x.y#1"]
    back = fastmlp.load(tmp_path / "c.safetensors")
    assert back["state_dict"]["w"].tolist() == [0, 0] and back["w"].tolist() == [1, 1]
    assert back["state_dict"]["x.y"].tolist() == [2, 2] and back["x"]["y"].tolist() == [3, 3]
    assert back["t"][1][0].tolist() == [1, 1] and back["x.y"].tolist() == [2, 2]
    fastmlp.save(fastmlp.ones(2), tmp_path / "one.safetensors")
    assert list(st_numpy.load_file(str(tmp_path / "one.safetensors"))) == ["tensor"]


def _fixture_values(shape, scale):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float32).reshape(shape) - n / 2) / scale


def test_a_file_of_the_first_format_still_loads():
    """tests/fixtures/checkpoint_format1.safetensors was written by fastmlp.save before the tensors were named
    by their keys (they are t0..t4 there, with the structure in the metadata)."""
    import json

    path = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoint_format1.safetensors")
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert sorted(k for k in json.loads(raw[8:8 + n]) if k != "__metadata__") == ["t0", "t1", "t2", "t3", "t4"]
    ck = fastmlp.load(path)
    assert ck["arch"] == {"in_features": 5, "hidden": [4], "out_features": 3, "activation": "tanh",
                          "dropout": 0.0}
    assert ck["epoch"] == 2 and ck["metrics"] == {"val_loss": 0.5} and ck["pair"] == (1, "a")
    assert ck["steps"].dtype == fastmlp.int64 and ck["steps"].tolist() == [7, 9]
    expected = {"0.weight": _fixture_values((4, 5), 8), "0.bias": _fixture_values((4,), 4),
                "2.weight": _fixture_values((3, 4), 16), "2.bias": _fixture_values((3,), 2)}
    assert list(ck["state_dict"]) == list(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(ck["state_dict"][k].numpy(), v)
    from fastmlp.train.mlp import load_mlp_checkpoint

    model, info = load_mlp_checkpoint(path)
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    ref = np.tanh(x.astype(np.float64) @ expected["0.weight"].T + expected["0.bias"]) @ expected["2.weight"].T \
        + expected["2.bias"]
    np.testing.assert_allclose(model(fastmlp.tensor(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-6)


# ---- leftovers of interrupted saves --------------------------------------------------------------------------
_KILLED_SAVE = """
import os, sys, time
import fastmlp
stage = sys.argv[2]
real = getattr(os, stage)
def stop(*args):
    print("inside", flush=True)
    time.sleep(600)
setattr(os, stage, stop)
fastmlp.save({"w": fastmlp.zeros(100000)}, sys.argv[1])
"""


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "ckpt.pt")


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_a_save_killed_midway_leaves_an_obvious_temporary_that_the_next_save_removes(tmp_path, stage):
    import signal
    import subprocess
    import sys

    path = tmp_path / "ckpt.pt"
    fastmlp.save({"w": fastmlp.ones(3)}, path)
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(fastmlp.__file__)),
                                                       os.environ.get("PYTHONPATH", "")]))
    children = []
    for _ in range(2):
        child = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(path), stage], stdout=subprocess.PIPE,
                                 env=env, text=True, cwd=str(tmp_path))
        assert child.stdout.readline() == "inside\n"
        children.append(child)
    temps = _temps(tmp_path)
    assert len(temps) == 2
    for name in temps:
        assert name.startswith("ckpt.pt.fastmlp-save-") and name.endswith(".tmp")
    for child in children:
        assert sum(f"-{child.pid}-" in name for name in temps) == 1
    children[0].send_signal(signal.SIGKILL)
    children[0].wait()
    assert path.read_bytes() == before  # the kill left the previous checkpoint intact
    fastmlp.save({"w": fastmlp.full((3,), 2.0)}, path)
    # the killed save's temporary is gone; the one of the save still running is left alone
    assert [f"-{children[1].pid}-" in n for n in _temps(tmp_path)] == [True]
    children[1].send_signal(signal.SIGKILL)
    children[1].wait()
    fastmlp.save({"w": fastmlp.full((3,), 3.0)}, path)
    assert _temps(tmp_path) == []
    assert fastmlp.load(path)["w"].tolist() == [3.0, 3.0, 3.0]


def test_temporaries_of_other_hosts_are_removed_only_when_old(tmp_path):
    import time

    path = tmp_path / "ckpt.pt"
    old = tmp_path / "ckpt.pt.fastmlp-save-elsewhere-123-abc.tmp"
    fresh = tmp_path / "ckpt.pt.fastmlp-save-elsewhere-124-abd.tmp"
    other_target = tmp_path / "other.pt.fastmlp-save-elsewhere-125-abe.tmp"
    for p in (old, fresh, other_target):
        p.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(other_target, (two_days_ago, two_days_ago))
    fastmlp.save({"w": fastmlp.ones(1)}, path)
    assert not old.exists() and fresh.exists() and other_target.exists()


def test_a_deep_pytorch_mlp_saved_by_safetensors_is_rebuilt_by_load_mlp_checkpoint(tmp_path):
    """safetensors writes the tensors sorted by name, so "10.weight" comes before "2.weight"."""
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    from fastmlp.train.mlp import load_mlp_checkpoint

    torch.manual_seed(0)
    sizes = [6, 5, 4, 7, 3, 5, 4, 2]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    twin = torch.nn.Sequential(*layers[:-1])
    st_torch.save_file(twin.state_dict(), str(tmp_path / "deep.safetensors"))
    model, info = load_mlp_checkpoint(tmp_path / "deep.safetensors")
    assert info["arch"]["hidden"] == sizes[1:-1]
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(fastmlp.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
