"""Tables of numeric features for ``fastmlp train --data-file`` (what ``pandas.read_csv`` + scikit-learn's
``StandardScaler`` and ``LabelEncoder`` do for a PyTorch script).

``read_table`` reads a CSV file (with a header row), a ``.npz`` archive, a ``.npy``
features file (its targets in a second ``.npy``), or a Parquet file (when pyarrow is
installed) into a float32 feature matrix and a raw target column. A CSV file is read
in chunks of rows straight into the matrix and a ``.npy`` file is memory-mapped, so a
large file is never held twice. ``encode_target`` turns the target into class indices
(integer or string targets; the classes are listed) or regression values, and
``Standardizer`` is fitted on the training rows only. Bad input (a missing column, a
value that is not a number, a NaN, an empty file) raises ``TableError``, whose one-line
message names the file and the column or row.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["TableError", "Table", "read_table", "encode_target", "Standardizer", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".npz", ".npy", ".parquet", ".pq")
_CHUNK_ROWS = 65536
_FEATURE_KEYS = ("X", "x", "features", "data")


class TableError(ValueError):
    """A table that can't be used: the message names the file and the column or row."""


@dataclass
class Table:
    """Numeric features [N, F] (float32; a memory map for ``.npy``), their names, and the raw target column."""

    features: np.ndarray
    feature_names: list
    target: Optional[np.ndarray] = None
    target_name: Optional[str] = None
    source: str = ""
    row_label: str = "row"  # "data row" for a CSV file (data row k is line k+1), "row" for arrays

    def __len__(self) -> int:
        return int(self.features.shape[0])


# ---- reading ----------------------------------------------------------------------------------
def read_table(path: Union[str, os.PathLike], target: Optional[str] = None,
               features: Optional[Sequence[str]] = None) -> Table:
    """Read the table at `path`.

    `target` is the target column (a ``.npz`` key; for a ``.npy`` features file, the
    path of the targets' ``.npy``); None reads features only. `features` selects and
    orders the feature columns by name (default: every column but the target).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TableError(f"no such data file: '{path}'")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        table = _read_npz(path, target, features)
    elif suffix == ".npy":
        table = _read_npy(path, target, features)
    elif suffix in (".parquet", ".pq"):
        table = _read_parquet(path, target, features)
    elif suffix in (".csv", ".tsv", ".txt"):
        try:
            table = _read_csv(path, target, features, "\t" if suffix == ".tsv" else ",")
        except UnicodeDecodeError as e:
            raise TableError(f"'{path}' is not a UTF-8 text file (byte {e.start}: {e.reason}); is it a CSV "
                             "table?") from None
    else:
        raise TableError(f"'{path}': unknown table format {suffix or '(no suffix)'}; use one of "
                         f"{', '.join(TABLE_SUFFIXES)}")
    if len(table) == 0:
        raise TableError(f"'{path}' has no data rows")
    if table.features.shape[1] == 0:
        raise TableError(f"'{path}' has no feature columns (only the target '{table.target_name}')")
    _check_finite(table)
    return table


def _select(path: str, columns: list, target: Optional[str], features: Optional[Sequence[str]]) -> list:
    """Indices of the feature columns among `columns`."""
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise TableError(f"'{path}': column '{dup}' appears more than once")
    if target is not None and target not in columns:
        raise TableError(f"'{path}' has no column '{target}' (the --target); its columns are: "
                         f"{_listing(columns)}")
    if features is None:
        return [i for i, c in enumerate(columns) if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise TableError(f"'{path}' has no column '{missing[0]}', a feature the model was trained on; its columns "
                         f"are: {_listing(columns)}")
    return [columns.index(c) for c in features]


def _listing(names: list, limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _read_csv(path: str, target: Optional[str], features: Optional[Sequence[str]], delimiter: str) -> Table:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"'{path}' is empty (a CSV file needs a header row naming its columns)") from None
        except csv.Error as e:
            raise TableError(f"'{path}': line 1 is not valid CSV ({e})") from None
        header = [h.strip() for h in header]
        cols = _select(path, header, target, features)
        names = [header[i] for i in cols]
        t_col = header.index(target) if target is not None else None
        blocks: list = []
        targets: list = []
        chunk: list = []
        first_row = 1
        row = 0
        try:
            for row, fields in enumerate(reader, start=1):
                if not fields:
                    raise TableError(f"'{path}': data row {row} (line {row + 1}) is blank")
                if len(fields) != len(header):
                    raise TableError(f"'{path}': data row {row} (line {row + 1}) has {len(fields)} fields; the "
                                     f"header has {len(header)}")
                chunk.append([fields[i] for i in cols])
                if t_col is not None:
                    targets.append(fields[t_col].strip())
                if len(chunk) == _CHUNK_ROWS:
                    blocks.append(_parse_block(path, chunk, names, first_row))
                    first_row += len(chunk)
                    chunk = []
        except csv.Error as e:
            raise TableError(f"'{path}': data row {row + 1} is not valid CSV ({e})") from None
        if chunk:
            blocks.append(_parse_block(path, chunk, names, first_row))
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, len(names)), np.float32)
    y = _parse_target(path, targets, target) if t_col is not None else None
    return Table(matrix, names, y, target, path, "data row")


def _parse_block(path: str, rows: list, names: list, first_row: int) -> np.ndarray:
    try:
        return np.array(rows, dtype=np.float64).astype(np.float32)
    except ValueError:
        pass
    for r, fields in enumerate(rows):  # find the cell to name
        for name, value in zip(names, fields):
            try:
                float(value)
            except ValueError:
                what = "is empty" if not value.strip() else f"is {value!r}, not a number"
                row = first_row + r
                raise TableError(f"'{path}': data row {row} (line {row + 1}), column '{name}' {what} (feature "
                                 "columns must be numeric)") from None
    raise TableError(f"'{path}': the feature columns could not be read as numbers")


def _parse_target(path: str, values: list, name: str) -> np.ndarray:
    for i, v in enumerate(values):
        if not v:
            raise TableError(f"'{path}': data row {i + 1} (line {i + 2}), target column '{name}' is empty")
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=object)  # class names


def _read_npz(path: str, target: Optional[str], features: Optional[Sequence[str]]) -> Table:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise TableError(f"'{path}' is not a readable .npz archive ({e})") from None
    with archive:
        keys = list(archive.files)
        if target is not None and target not in keys:
            raise TableError(f"'{path}' has no array '{target}' (the --target); its arrays are: {_listing(keys)}")
        rest = [k for k in keys if k != target]
        chosen = [k for k in _FEATURE_KEYS if k in rest]
        if chosen:
            key = chosen[0]
        elif len(rest) == 1:
            key = rest[0]
        else:
            raise TableError(f"'{path}': which array holds the features? name it one of {', '.join(_FEATURE_KEYS)} "
                             f"(its arrays are: {_listing(keys)})")
        x = _feature_array(path, archive[key], f"array '{key}'")
        y = _target_array(path, archive[target], x.shape[0], f"array '{target}'") if target is not None else None
    return Table(x, _array_feature_names(x, features, path), y, target, path)


def _read_npy(path: str, target: Optional[str], features: Optional[Sequence[str]]) -> Table:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise TableError(f"'{path}' is not a readable .npy file ({e})") from None
    x = _feature_array(path, x, "the features")
    y = None
    if target is not None:
        if not target.lower().endswith(".npy"):
            raise TableError(f"'{path}' is a .npy features file: --target must be the .npy file of its targets; "
                             f"got '{target}'")
        if not os.path.isfile(target):
            raise TableError(f"no such target file: '{target}'")
        try:
            raw = np.load(target, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise TableError(f"'{target}' is not a readable .npy file ({e})") from None
        y = _target_array(target, raw, x.shape[0], "the targets")
    return Table(x, _array_feature_names(x, features, path), y, target, path)


def _feature_array(path: str, x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise TableError(f"'{path}': {what} must be a 2-d array [rows, features]; got shape {list(x.shape)}")
    if x.dtype.kind not in "biuf":
        raise TableError(f"'{path}': {what} holds {x.dtype} values; features must be numeric")
    return x


def _target_array(path: str, y: np.ndarray, rows: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != rows:
        raise TableError(f"'{path}': {what} must be one value per row ({rows}); got shape {list(y.shape)}")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind == "O" and all(isinstance(v, str) for v in y.tolist()):
        return y  # strings, as pyarrow gives them
    if y.dtype.kind not in "iufUS":
        raise TableError(f"'{path}': {what} holds {y.dtype} values; targets must be numbers or strings")
    return y.astype(str).astype(object) if y.dtype.kind in "US" else y


def _array_feature_names(x: np.ndarray, features: Optional[Sequence[str]], path: str) -> list:
    names = [f"x{i}" for i in range(x.shape[1])]
    if features is not None and list(features) != names:
        raise TableError(f"'{path}' has {x.shape[1]} feature columns; the model was trained on {len(features)} "
                         f"({_listing(list(features))})")
    return names


def _read_parquet(path: str, target: Optional[str], features: Optional[Sequence[str]]) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError(f"reading Parquet ('{path}') needs pyarrow: pip install pyarrow") from None
    try:
        data = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError types
        raise TableError(f"'{path}' is not a readable Parquet file ({e})") from None
    columns = list(data.column_names)
    cols = _select(path, columns, target, features)
    names = [columns[i] for i in cols]
    x = np.empty((data.num_rows, len(cols)), dtype=np.float32)
    for j, name in enumerate(names):
        col = data.column(name)
        if col.null_count:
            first = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
            raise TableError(f"'{path}': row {first + 1}, column '{name}' is empty (null)")
        values = col.to_numpy(zero_copy_only=False)
        if values.dtype.kind not in "biuf":
            raise TableError(f"'{path}': column '{name}' holds {col.type} values; feature columns must be numeric")
        x[:, j] = values
    y = None
    if target is not None:
        col = data.column(target)
        if col.null_count:
            first = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
            raise TableError(f"'{path}': row {first + 1}, target column '{target}' is empty (null)")
        y = _target_array(path, col.to_numpy(zero_copy_only=False), data.num_rows, f"column '{target}'")
    return Table(x, names, y, target, path)


def _check_finite(table: Table) -> None:
    x = table.features
    if x.dtype.kind == "f":
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            block = np.asarray(x[start:start + _CHUNK_ROWS])
            bad = ~np.isfinite(block)
            if bad.any():
                r, c = (int(v) for v in np.argwhere(bad)[0])
                row = start + r + 1
                where = f"data row {row} (line {row + 1})" if table.row_label == "data row" else f"row {row}"
                raise TableError(f"'{table.source}': {where}, column '{table.feature_names[c]}' is {block[r, c]} "
                                 "(features must be finite numbers)")
    y = table.target
    if y is not None and y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            row = int(np.argmax(bad)) + 1
            where = f"data row {row} (line {row + 1})" if table.row_label == "data row" else f"row {row}"
            raise TableError(f"'{table.source}': {where}, target column '{table.target_name}' is {y[row - 1]}")


# ---- targets and standardisation --------------------------------------------------------------
def encode_target(table: Table, task: Optional[str] = None,
                  classes: Optional[list] = None) -> tuple[np.ndarray, str, Optional[list]]:
    """(targets, task, classes): class indices (int64) for classification, float32 values for regression.

    Without `task`, an integer or string target means classification; a target with
    fractional values needs ``task="regression"``. Given `classes` (a trained model's),
    labels are looked up in them and an unknown label is an error naming its row.
    """
    y = table.target
    if y is None:
        raise TableError(f"'{table.source}': no target column")
    name = table.target_name
    if y.dtype.kind == "f" and task != "regression" and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)  # labels written as 0.0, 1.0, ...
    if task is None:
        if y.dtype.kind == "f":
            raise TableError(f"'{table.source}': the target column '{name}' holds fractional numbers; pass "
                             "--task regression to fit them, or use integer or string class labels")
        task = "classification"
    if task == "regression":
        if y.dtype.kind not in "iuf":
            raise TableError(f"'{table.source}': --task regression needs a numeric target; column '{name}' holds "
                             "strings")
        return y.astype(np.float32), task, None
    if task != "classification":
        raise ValueError(f"encode_target: task must be 'classification' or 'regression'; got {task!r}")
    if y.dtype.kind == "f":
        raise TableError(f"'{table.source}': classification needs integer or string labels; the target column "
                         f"'{name}' holds fractional numbers (use --task regression)")
    if classes is None:
        classes = sorted(set(y.tolist()), key=lambda v: (isinstance(v, str), v))
        if len(classes) < 2:
            raise TableError(f"'{table.source}': the target column '{name}' has a single class ({classes[0]!r}); "
                             "classification needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    if y.dtype.kind in "iu":
        index.update({str(c): i for c, i in list(index.items())})  # int labels read back from JSON stay ints
    labels = np.empty(len(y), dtype=np.int64)
    for i, v in enumerate(y.tolist()):
        k = index.get(v)
        if k is None:
            k = index.get(str(v))
        if k is None:
            where = f"data row {i + 1} (line {i + 2})" if table.row_label == "data row" else f"row {i + 1}"
            raise TableError(f"'{table.source}': {where}, target column '{name}' is {v!r}, a class the model was "
                             f"not trained on (its classes: {_listing(list(classes))})")
        labels[i] = k
    return labels, task, list(classes)


@dataclass
class Standardizer:
    """(x - mean) / std per feature (``sklearn.preprocessing.StandardScaler``); constant features keep std 1."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def fit(cls, x: np.ndarray, rows: Optional[np.ndarray] = None) -> "Standardizer":
        """Statistics of `x` (or of its `rows`), in float64, a block of rows at a time."""
        idx = np.arange(x.shape[0]) if rows is None else np.sort(np.asarray(rows))
        if len(idx) == 0:
            raise ValueError("Standardizer.fit: no rows to fit on")
        total = np.zeros(x.shape[1])
        for start in range(0, len(idx), _CHUNK_ROWS):
            total += np.asarray(x[idx[start:start + _CHUNK_ROWS]], dtype=np.float64).sum(0)
        mean = total / len(idx)
        sq = np.zeros(x.shape[1])
        for start in range(0, len(idx), _CHUNK_ROWS):
            sq += ((np.asarray(x[idx[start:start + _CHUNK_ROWS]], dtype=np.float64) - mean) ** 2).sum(0)
        std = np.sqrt(sq / len(idx))  # the population std, as StandardScaler
        std[std < 1e-12] = 1.0
        return cls(mean, std)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """float32 (x - mean) / std, computed a block of rows at a time into one new array."""
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Standardizer.transform: expected {len(self.mean)} features; got {x.shape[1]}")
        out = np.empty(x.shape, dtype=np.float32)
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            block = np.asarray(x[start:start + _CHUNK_ROWS], dtype=np.float64)
            out[start:start + _CHUNK_ROWS] = (block - self.mean) / self.std
        return out

    def to_record(self) -> dict:
        """JSON-able form for a checkpoint (floats, exact: JSON keeps every bit of a float64)."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_record(cls, record: dict) -> "Standardizer":
        return cls(np.asarray(record["mean"], dtype=np.float64), np.asarray(record["std"], dtype=np.float64))
