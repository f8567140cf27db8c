"""fastmlp.datasets.table: CSV / npz / npy / Parquet tables, target encoding, standardisation, and one-line
errors that name the file and the column or row."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from fastmlp.datasets import table as T
from fastmlp.datasets.table import Standardizer, TableError, encode_target, read_table


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def sample(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    labels = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, n)]
    return x, labels


@pytest.mark.parametrize("small_chunks", [False, True])
def test_csv_features_and_string_classes(tmp_path, monkeypatch, small_chunks):
    if small_chunks:
        monkeypatch.setattr(T, "_CHUNK_ROWS", 7)  # the file is read in several blocks
    x, labels = sample()
    rows = [[repr(float(a)), repr(float(b)), lab, repr(float(c))] for (a, b, c), lab in zip(x, labels)]
    path = write_csv(tmp_path / "t.csv", ["a", "b", "label", "c"], rows)
    t = read_table(path, target="label")
    assert t.feature_names == ["a", "b", "c"] and t.features.dtype == np.float32
    np.testing.assert_array_equal(t.features, x.astype(np.float32))
    y, task, classes = encode_target(t)
    assert task == "classification" and classes == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(y, np.searchsorted(["cat", "dog", "emu"], labels))
    chosen = read_table(path, features=["c", "a"])  # what predict does: the trained features, in order
    assert chosen.target is None and chosen.feature_names == ["c", "a"]
    np.testing.assert_array_equal(chosen.features, x[:, [2, 0]].astype(np.float32))


def test_integer_targets_and_regression(tmp_path):
    x, _ = sample(20)
    ints = np.arange(20) % 4 * 10
    path = write_csv(tmp_path / "i.csv", ["a", "b", "c", "y"],
                     [[*(repr(float(v)) for v in r), str(v)] for r, v in zip(x, ints)])
    y, task, classes = encode_target(read_table(path, "y"))
    assert classes == [0, 10, 20, 30] and y.tolist() == (ints // 10).tolist()
    values = x[:, 0] * 2.5
    rows = [[*(repr(float(a)) for a in r), repr(float(v))] for r, v in zip(x, values)]
    path = write_csv(tmp_path / "r.csv", ["a", "b", "c", "y"], rows)
    with pytest.raises(TableError, match="target column 'y' holds fractional numbers; pass --task regression"):
        encode_target(read_table(path, "y"))
    y, task, classes = encode_target(read_table(path, "y"), "regression")
    assert task == "regression" and classes is None
    np.testing.assert_array_equal(y, values.astype(np.float32))


def test_labels_unknown_to_the_model_name_the_row(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "y"], [["1", "cat"], ["2", "dog"], ["3", "yak"]])
    with pytest.raises(TableError, match=r"data row 3 \(line 4\), target column 'y' is 'yak', a class the model was "
                                         r"not trained on \(its classes: cat, dog\)"):
        encode_target(read_table(path, "y"), "classification", ["cat", "dog"])


@pytest.mark.parametrize("content,message", [
    ("", r"'BAD' is empty \(a CSV file needs a header row"),
    ("a,b,y\n", "'BAD' has no data rows"),
    ("a,b,y\n1,2,0\n3,x,1\n", r"data row 2 \(line 3\), column 'b' is 'x', not a number"),
    ("a,b,y\n1,2,0\n3,,1\n", r"data row 2 \(line 3\), column 'b' is empty"),
    ("a,b,y\n1,2,0\nnan,4,1\n", r"data row 2 \(line 3\), column 'a' is nan \(features must be finite numbers\)"),
    ("a,b,y\n1,2,0\n3,4\n", r"data row 2 \(line 3\) has 2 fields; the header has 3"),
    ("a,b,y\n1,2,\n", r"data row 1 \(line 2\), target column 'y' is empty"),
    ("a,b,z\n1,2,0\n", r"'BAD' has no column 'y' \(the --target\); its columns are: a, b, z"),
    ("a,a,y\n1,2,0\n", "column 'a' appears more than once"),
    ("y\n0\n1\n", "has no feature columns"),
    ("a,y\n1,0\n2,0\n", "has a single class"),
])
def test_bad_csv_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError) as e:
        encode_target(read_table(path, "y"))
    msg = str(e.value)
    assert "\n" not in msg
    import re

    assert re.search(message.replace("BAD", re.escape(str(path))), msg), msg


def test_npz_and_npy_pairs(tmp_path):
    x, labels = sample(30)
    np.savez(tmp_path / "d.npz", X=x, label=labels)
    t = read_table(tmp_path / "d.npz", "label")
    assert t.feature_names == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(t.features, x)
    assert encode_target(t)[2] == ["cat", "dog", "emu"]
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(30) % 2)
    t = read_table(tmp_path / "x.npy", str(tmp_path / "y.npy"))
    assert isinstance(t.features, np.memmap)  # memory-mapped, not read into memory
    assert encode_target(t)[0].tolist() == (np.arange(30) % 2).tolist()
    np.save(tmp_path / "short.npy", np.zeros(5))
    with pytest.raises(TableError, match=r"short.npy': the targets must be one value per row \(30\); got shape \[5\]"):
        read_table(tmp_path / "x.npy", str(tmp_path / "short.npy"))
    with pytest.raises(TableError, match="--target must be the .npy file of its targets"):
        read_table(tmp_path / "x.npy", "label")
    bad = x.copy()
    bad[17, 2] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(TableError, match=r"row 18, column 'x2' is inf"):
        read_table(tmp_path / "inf.npy")
    np.savez(tmp_path / "two.npz", a=x, b=x, y=labels)
    with pytest.raises(TableError, match="which array holds the features"):
        read_table(tmp_path / "two.npz", "y")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x, labels = sample(40)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1].astype(np.float32), "n": np.arange(40), "y": labels}),
                   tmp_path / "t.parquet")
    t = read_table(tmp_path / "t.parquet", "y")
    assert t.feature_names == ["a", "b", "n"]
    np.testing.assert_array_equal(t.features, np.stack([x[:, 0], x[:, 1], np.arange(40)], 1).astype(np.float32))
    assert encode_target(t)[2] == ["cat", "dog", "emu"]
    pq.write_table(pa.table({"a": pa.array([1.0, None, 2.0]), "y": [0, 1, 0]}), tmp_path / "null.parquet")
    with pytest.raises(TableError, match=r"row 2, column 'a' is empty \(null\)"):
        read_table(tmp_path / "null.parquet", "y")
    pq.write_table(pa.table({"a": ["x", "y"], "y": [0, 1]}), tmp_path / "str.parquet")
    with pytest.raises(TableError, match="column 'a' holds string values; feature columns must be numeric"):
        read_table(tmp_path / "str.parquet", "y")


def test_standardizer_fits_only_the_given_rows(monkeypatch):
    monkeypatch.setattr(T, "_CHUNK_ROWS", 16)
    x, _ = sample(100)
    x[:, 1] = 3.0  # a constant column keeps std 1
    rows = np.random.default_rng(1).permutation(100)[:70]
    s = Standardizer.fit(x.astype(np.float32), rows)
    ref = x.astype(np.float32).astype(np.float64)[rows]
    np.testing.assert_allclose(s.mean, ref.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.std[[0, 2]], ref.std(0)[[0, 2]], rtol=1e-12)
    assert s.std[1] == 1.0
    out = s.transform(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x - s.mean) / s.std, rtol=1e-6, atol=1e-6)
    back = Standardizer.from_record(s.to_record())
    assert np.array_equal(back.mean, s.mean) and np.array_equal(back.std, s.std)


def test_a_binary_file_named_csv_is_a_clear_error(tmp_path):
    (tmp_path / "model.csv").write_bytes(b"\x93NUMPY\xff\xfe\x00binary")
    with pytest.raises(TableError, match="model.csv' is not a UTF-8 text file"):
        read_table(tmp_path / "model.csv", "y")
    with pytest.raises(TableError, match="no such data file"):
        read_table(tmp_path / "missing.csv", "y")
    (tmp_path / "t.xlsx").write_bytes(b"")
    with pytest.raises(TableError, match="unknown table format .xlsx"):
        read_table(tmp_path / "t.xlsx", "y")
