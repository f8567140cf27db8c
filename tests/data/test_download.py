"""Downloads from local file:// mirrors: fallback between mirrors, checksum checks (archive or content),
atomic writes, and MNIST(download=True)."""
from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from datahelpers import write_fake_mnist

from fastmlp.datasets import MNIST, DownloadError
from fastmlp.datasets.download import download_file


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def mirror(tmp_path, name="mirror"):
    folder = tmp_path / name
    folder.mkdir()
    return folder, folder.as_uri() + "/"


def test_first_mirror_missing_second_good(tmp_path):
    _, bad = mirror(tmp_path, "bad")
    good_dir, good = mirror(tmp_path, "good")
    payload = gzip.compress(b"hello idx")
    (good_dir / "f.gz").write_bytes(payload)
    out = download_file("f.gz", str(tmp_path / "dest"), [bad, good], md5s=[md5(payload)], progress=False)
    assert out == str(tmp_path / "dest" / "f.gz")
    assert (tmp_path / "dest" / "f.gz").read_bytes() == payload
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["f.gz"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "dest" / "f.gz").stat().st_mode & 0o777 == 0o666 & ~mask


def test_recompressed_file_accepted_by_content_checksum(tmp_path):
    src, url = mirror(tmp_path)
    content = b"the same bytes, compressed differently" * 100
    (src / "f.gz").write_bytes(gzip.compress(content, compresslevel=1))
    download_file("f.gz", str(tmp_path / "dest"), [url], md5s=[md5(gzip.compress(content, compresslevel=9))],
                  content_md5s=[md5(content)], progress=False)
    assert gzip.decompress((tmp_path / "dest" / "f.gz").read_bytes()) == content


def test_checksum_mismatch_everywhere_leaves_nothing(tmp_path):
    a_dir, a = mirror(tmp_path, "a")
    b_dir, b = mirror(tmp_path, "b")
    (a_dir / "f.gz").write_bytes(gzip.compress(b"wrong"))
    with pytest.raises(DownloadError) as e:
        download_file("f.gz", str(tmp_path / "dest"), [a, b], md5s=["0" * 32], content_md5s=["1" * 32],
                      progress=False)
    msg = str(e.value)
    assert "could not download f.gz" in msg and "checksum mismatch" in msg and (b + "f.gz") in msg
    assert list((tmp_path / "dest").iterdir()) == []


def test_existing_file_is_not_replaced_by_a_bad_download(tmp_path):
    src, url = mirror(tmp_path)
    (src / "f.gz").write_bytes(b"corrupted")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f.gz").write_bytes(b"previous good copy")
    with pytest.raises(DownloadError):
        download_file("f.gz", str(dest), [url], md5s=[md5(b"good")], progress=False)
    assert (dest / "f.gz").read_bytes() == b"previous good copy"


def test_mnist_download_fetches_the_missing_files(tmp_path, monkeypatch, capsys):
    src, url = mirror(tmp_path)
    arrays = write_fake_mnist(src, gz=True)
    resources = {name + ".gz": ((md5((src / (name + ".gz")).read_bytes()),), ()) for name in arrays}
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "offline").as_uri() + "/", url])
    monkeypatch.setattr(MNIST, "resources", resources)
    ds = MNIST(tmp_path / "data", train=False, download=True)
    assert sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir()) == sorted(resources)
    np.testing.assert_array_equal(ds.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert "Downloading" in capsys.readouterr().err
    # a second time nothing is fetched: the mirrors are not even asked
    monkeypatch.setattr(MNIST, "mirrors", [])
    assert len(MNIST(tmp_path / "data", train=True, download=True)) == 12


def test_mnist_download_failure_says_how_to_provide_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "nowhere").as_uri() + "/"])
    with pytest.raises(DownloadError) as e:
        MNIST(tmp_path / "data", download=True)
    msg = str(e.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg
    assert "FASTMLP_DATA" in msg and "--data" in msg and str(tmp_path / "data" / "MNIST" / "raw") in msg


def test_published_mnist_checksums_match_the_local_copy():
    """The checksums the downloader accepts include those of the real files (archive or content)."""
    from datahelpers import real_mnist_root

    root = real_mnist_root()
    if root is None:
        pytest.skip("real MNIST not found (set FASTMLP_DATA)")
    for name, (archive, content) in MNIST.resources.items():
        path = root / name
        if not path.exists():
            pytest.skip(f"{name} is not in {root} as a .gz file")
        blob = path.read_bytes()
        assert md5(blob) in archive or md5(gzip.decompress(blob)) in content, name

