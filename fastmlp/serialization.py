"""``fastmlp.save`` / ``fastmlp.load``: checkpoints without pickle (``torch.save`` / ``torch.load``).

A file is a plain safetensors file: an 8-byte little-endian header length, a JSON
header describing each tensor (dtype, shape, byte range), then the raw tensor
bytes. Tensors are named by where they sit in the saved object, so the file is
useful without fastmlp:

* a state dict (``fastmlp.save(model.state_dict(), path)``) is stored under its
  own keys (``0.weight``, ``0.bias``, ...): ``safetensors.torch.load_file(path)``
  gives a dict that the equivalent PyTorch model accepts in ``load_state_dict``;
* a record holding a ``"state_dict"`` entry (what ``ModelCheckpoint`` and
  ``fastmlp train`` write) names that state dict's tensors by their bare keys too;
* any other tensor is named by its path of keys and indices joined with dots
  (``optimizer.state.0.exp_avg``; a lone tensor is ``tensor``).

Everything that is not a tensor (nesting of dicts and lists, numbers, strings, the
optimizer's hyper-parameters) is stored as JSON in the header's ``__metadata__``,
together with a CRC-32 of the tensor bytes. Any safetensors file loads, e.g. one
written by ``safetensors.torch.save_file``: it gives an ordered dict of tensors.
Files of the first fastmlp format (tensors named ``t0``, ``t1``, ...) load as before.

Loading never runs code, and a truncated or corrupted file, or one with bytes
after the data its header declares, raises ``CheckpointError`` (a ValueError)
naming the file and the problem. A PyTorch checkpoint (``torch.save``'s zip archive
or a legacy pickle) is recognised and refused with a note on converting it:
unpickling can run arbitrary code.

Saving to a path writes ``<name>.fastmlp-save-<host>-<pid>-<random>.tmp`` beside
the target, syncs it to disk and renames it over the target, so a crash mid-save
leaves the previous file intact. A temporary left behind by a save that was killed
(its process is gone, or it is more than a day old) is removed by the next save to
the same path.

As with ``torch.save``/``torch.load``, `f` is a path or a binary file object
(``write`` for saving, ``read`` for loading, e.g. ``io.BytesIO`` or ``open(path,
"rb")``); a file object is written or read from its current position, and its
saves are not atomic.
"""
from __future__ import annotations

import io
import json
import os
import socket
import struct
import tempfile
import time
import zlib
from collections import OrderedDict
from typing import Any

import numpy as np

from . import _dtype
from ._files import new_file_mode
from ._device import as_device
from .tensor import Tensor, _wrap

__all__ = ["save", "load", "CheckpointError"]

_CODES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "uint8": "U8", "int8": "I8",
          "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL"}
_FROM_CODE = {v: getattr(_dtype, k if k != "bool" else "bool_") for k, v in _CODES.items()}
_FORMAT_1 = "fastmlp"  # the first format's "format" value (tensors named t0, t1, ...)
_VERSION_KEY = "fastmlp.format"
_VERSION = "2"
_TMP_MARK = ".fastmlp-save-"  # <target>.fastmlp-save-<host>-<pid>-<random>.tmp
_STALE_AFTER_S = 24 * 3600
_MAX_HEADER = 100 * 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # a pickle of protocol 2 or later starts with PROTO, then the protocol number


class CheckpointError(ValueError):
    """A file that ``fastmlp.load`` can't read: truncated, corrupted, trailing data, or not a fastmlp /
    safetensors file (a PyTorch pickle checkpoint, for example). The message names the file."""


def _is_path(f: Any) -> bool:
    return isinstance(f, (str, bytes, os.PathLike))


def _encode(obj: Any, found: list, parts: tuple) -> Any:
    """JSON-able description of obj. Each tensor becomes an entry {"__tensor__": name} whose name
    `_name_tensors` fills in later; `found` collects (key path, entry, tensor)."""
    path = "obj" + "".join(f"[{p!r}]" for p in parts)
    if isinstance(obj, Tensor):
        out: dict = {"__tensor__": None}
        found.append((parts, out, obj))
        if obj.requires_grad:
            out["requires_grad"] = True
        from .nn.module import Parameter

        if isinstance(obj, Parameter):
            out["parameter"] = True
        return out
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, (dict, OrderedDict)):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"fastmlp.save: dictionary keys must be str or int; got {type(k).__name__} at {path}")
            items.append([k, _encode(v, found, parts + (k,))])
        return {"__odict__" if isinstance(obj, OrderedDict) else "__dict__": items}
    if isinstance(obj, (list, tuple)):
        enc = [_encode(v, found, parts + (i,)) for i, v in enumerate(obj)]
        return {"__tuple__": enc} if isinstance(obj, tuple) else enc
    from .nn.module import Module
    from .optim.optimizer import Optimizer

    if isinstance(obj, Module):
        raise TypeError(f"fastmlp.save: can't save a {type(obj).__name__} module object (that would need pickle); "
                        "save model.state_dict() and restore it with load_state_dict()")
    if isinstance(obj, Optimizer):
        raise TypeError("fastmlp.save: save optimizer.state_dict(), not the optimizer object")
    raise TypeError(f"fastmlp.save: can't save an object of type {type(obj).__name__} at {path}; "
                    "supported: tensors, dicts, lists, tuples, numbers, strings, None")


def _name_tensors(found: list, top: Any) -> None:
    """Give every tensor entry its name in the file: its key path joined with dots, without the leading
    "state_dict" of a checkpoint record (so a state dict's tensors carry its own keys) unless that bare
    name is another tensor's path. Two equal paths ({"a.b": x, "a": {"b": y}}) get a "#n" suffix."""
    strip = isinstance(top, dict) and isinstance(top.get("state_dict"), dict)

    def under_state_dict(parts: tuple) -> bool:
        return strip and len(parts) > 1 and parts[0] == "state_dict"

    def joined(parts: tuple) -> str:
        return ".".join(str(p) for p in parts) or "tensor"

    reserved = {joined(parts) for parts, _, _ in found if not under_state_dict(parts)}
    taken: set = set()
    for parts, entry, _ in found:
        full = joined(parts)
        name = full
        if under_state_dict(parts) and joined(parts[1:]) not in reserved:
            name = joined(parts[1:])
        n = 1
        while name in taken:
            name = f"{full}#{n}"
            n += 1
        taken.add(name)
        entry["__tensor__"] = name


def _decode(obj: Any, tensors: dict, where: str) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            name = obj["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"{where}: the structure refers to a tensor '{name}' that the file does not "
                                      "hold")
            t = tensors[name]
            if obj.get("parameter"):
                from .nn.module import Parameter

                return Parameter(t, requires_grad=bool(obj.get("requires_grad", True)))
            if obj.get("requires_grad"):
                t.requires_grad = True
            return t
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
        for key, cls in (("__odict__", OrderedDict), ("__dict__", dict)):
            if key in obj:
                return cls((k, _decode(v, tensors, where)) for k, v in obj[key])
        raise CheckpointError(f"{where}: unrecognised structure entry {sorted(obj)}")
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    return obj


def _serialize(obj: Any) -> list:
    """The file's contents as a list of byte strings: length field, header, tensor data."""
    found: list = []
    structure = _encode(obj, found, ())
    _name_tensors(found, obj)
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    crc = 0
    for _, entry, t in found:
        arr = t._host()
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        data = arr.tobytes()
        header[entry["__tensor__"]] = {"dtype": _CODES[_dtype.from_numpy_dtype(arr.dtype).name],
                                       "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        crc = zlib.crc32(data, crc)
        blobs.append(data)
    # "format": "pt" is what safetensors.torch.save_file writes: the tensors are laid out as PyTorch's
    header["__metadata__"] = {"format": "pt", _VERSION_KEY: _VERSION, "structure": json.dumps(structure),
                              "crc32": str(crc)}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return [struct.pack("<Q", len(raw)), raw, *blobs]


def _host() -> str:
    """This machine's name as it appears in temporary file names (no '-' confusion: parsed from the right)."""
    return "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname()) or "host"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be saving to the same path
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else (PermissionError), or we can't tell
    return True


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete what killed saves to `base` left in `directory`: temporaries of a process of this host that
    is gone, and any older than _STALE_AFTER_S (a process of another host sharing the folder)."""
    prefix = base + _TMP_MARK
    try:
        names = os.listdir(directory)
    except OSError:
        return
    host = _host()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        try:
            owner, pid, _ = name[len(prefix):-len(".tmp")].rsplit("-", 2)
            pid_n = int(pid)
        except ValueError:
            continue
        full = os.path.join(directory, name)
        try:
            if owner == host:
                stale = not _process_alive(pid_n)
            else:
                stale = time.time() - os.stat(full).st_mtime > _STALE_AFTER_S
            if stale:
                os.unlink(full)
        except OSError:
            pass  # removed meanwhile, or not ours to remove


def save(obj: Any, f) -> None:
    """Write obj (a tensor, or dicts/lists of tensors and plain values, e.g. a state_dict) to `f`
    (``torch.save``): a path (saved atomically) or a binary file object with ``write``."""
    if not _is_path(f):
        if isinstance(f, io.TextIOBase) or not callable(getattr(f, "write", None)):
            raise TypeError(f"fastmlp.save: f must be a path or a binary file object with write() (opened 'wb', "
                            f"or io.BytesIO); got {type(f).__name__}")
        for chunk in _serialize(obj):
            f.write(chunk)
        if callable(getattr(f, "flush", None)):
            f.flush()
        return
    path = os.fsdecode(f)
    chunks = _serialize(obj)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(path)
    _remove_stale_temps(directory, base)
    fd, tmp = tempfile.mkstemp(prefix=f"{base}{_TMP_MARK}{_host()}-{os.getpid()}-", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, new_file_mode(path))
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _read(f) -> tuple[bytes, str, str]:
    """The bytes of `f` (a path, or a binary file object read from its position), "fastmlp.load(...)" for
    messages, and a name to put in a conversion command."""
    if not _is_path(f):
        if not callable(getattr(f, "read", None)):
            raise TypeError(f"fastmlp.load: f must be a path or a binary file object with read() (opened 'rb', "
                            f"or io.BytesIO); got {type(f).__name__}")
        name = getattr(f, "name", None)
        label = repr(name) if isinstance(name, str) else f"<{type(f).__name__}>"
        blob = f.read()
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"fastmlp.load({label}): the file object gave {type(blob).__name__}, not bytes; open "
                            "the file in binary mode ('rb')")
        return bytes(blob), f"fastmlp.load({label})", name if isinstance(name, str) else "checkpoint.pt"
    path = os.fsdecode(f)
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"fastmlp.load: no such file: '{path}'") from None
    return blob, f"fastmlp.load('{path}')", path


def _header_length(blob: bytes) -> int:
    (n,) = struct.unpack("<Q", blob[:8])
    return n


def _pickle_kind(blob: bytes) -> str:
    """What kind of PyTorch/pickle file `blob` is, or '' when it is neither."""
    if blob[:4] == _ZIP_MAGIC:
        return "a zip archive, the format of torch.save (a PyTorch checkpoint holding pickled objects)"
    if len(blob) >= 2 and blob[0] == _PICKLE_PROTO and 2 <= blob[1] <= 5:
        return "a Python pickle (what pickle.dump and the legacy torch.save format write)"
    return ""


def _refuse_pickle(where: str, kind: str, name: str) -> CheckpointError:
    stem = os.path.splitext(os.path.basename(name))[0] or "checkpoint"
    return CheckpointError(
        f"{where}: the file is {kind}. fastmlp does not load pickle files, because unpickling can run arbitrary "
        f"code. Convert it once where PyTorch and safetensors are installed, e.g. for a state_dict:\n"
        f"  python -c \"import torch; from safetensors.torch import save_file; "
        f"sd = torch.load({name!r}, weights_only=True); "
        f"save_file({{k: v.contiguous() for k, v in sd.items()}}, {stem + '.safetensors'!r})\"\n"
        f"then fastmlp.load({stem + '.safetensors'!r}) reads it.")


def load(f, map_location=None, weights_only: bool = True, mmap: bool = False) -> Any:
    """Read what save() wrote (or any safetensors file: a dict of tensors) from `f` (``torch.load``): a path
    or a binary file object with ``read``. Never executes code: pickle files are refused."""
    blob, where, name = _read(f)
    # a safetensors length field can begin with byte 0x80 too: only a file that is not plausibly one is checked
    looks_safetensors = len(blob) >= 9 and blob[8:9] == b"{" and _header_length(blob) <= len(blob) - 8
    kind = "" if looks_safetensors else _pickle_kind(blob)
    if kind:
        raise _refuse_pickle(where, kind, name)
    if len(blob) < 8:
        raise CheckpointError(f"{where}: the file is truncated or not a checkpoint ({len(blob)} bytes; a header "
                              "needs 8)")
    n = _header_length(blob)
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise CheckpointError(f"{where}: the file is truncated or corrupted: its header claims {n} bytes but the "
                              f"file has {len(blob) - 8} after the length field")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{where}: the header is corrupted (not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the header is corrupted (expected a JSON object)")
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: the header's __metadata__ is corrupted")
    dev = as_device(map_location) if map_location is not None and not callable(map_location) else None
    tensors: dict[str, Tensor] = {}
    ranges = []
    for name, info in header.items():
        try:
            dt = _FROM_CODE[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{where}: the entry for tensor '{name}' is corrupted: {info!r}") from None
        count = int(np.prod(shape)) if shape else 1
        if any(s < 0 for s in shape) or begin < 0 or end < begin or end - begin != count * dt.itemsize:
            raise CheckpointError(f"{where}: tensor '{name}' has inconsistent shape {list(shape)}, dtype "
                                  f"{info['dtype']} and byte range [{begin}, {end})")
        if end > len(data):
            raise CheckpointError(f"{where}: the file is truncated: tensor '{name}' needs bytes up to {end} but "
                                  f"the data section has {len(data)}")
        ranges.append((begin, end, name))
        arr = np.frombuffer(data[begin:end], dtype=dt.np).reshape(shape).copy()
        t = _wrap(arr)
        if dev is not None and dev.type != "cpu":
            t = t.to(dev)
        tensors[name] = t
    ranges.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise CheckpointError(f"{where}: tensors '{n0}' and '{n1}' overlap in the data section (corrupted "
                                  "header)")
    declared = max((e for _, e, _ in ranges), default=0)
    if len(data) > declared:
        raise CheckpointError(f"{where}: the file is corrupted or has trailing data: {len(data) - declared} bytes "
                              f"follow the {declared} bytes of tensor data its header declares")
    if "crc32" in meta:
        crc = 0
        for b, e, _ in ranges:
            crc = zlib.crc32(data[b:e], crc)
        if str(crc) != str(meta["crc32"]):
            raise CheckpointError(f"{where}: the tensor data is corrupted (checksum mismatch)")
    if (meta.get("format") == _FORMAT_1 or _VERSION_KEY in meta) and "structure" in meta:
        try:
            structure = json.loads(meta["structure"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{where}: the stored structure is corrupted ({e})") from None
        return _decode(structure, tensors, where)
    return OrderedDict((name, tensors[name]) for name in header)
