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
    entry = header["t0"]
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
