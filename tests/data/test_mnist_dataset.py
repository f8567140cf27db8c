"""MNIST and FashionMNIST: where files are found, what samples and batches look like, clear errors,
and the real MNIST files (skipped when they are absent)."""
from __future__ import annotations

import numpy as np
import pytest
from datahelpers import fake_mnist, idx_bytes, require_real_mnist, write_fake_mnist, write_file

import fastmlp
from fastmlp import transforms
from fastmlp.datasets import MNIST, DatasetNotFoundError, FashionMNIST, IdxError
from fastmlp.utils.data import DataLoader, Subset, SubsetRandomSampler


@pytest.mark.parametrize("layout", ["flat", "torchvision", "named"])
@pytest.mark.parametrize("gz", [True, False])
def test_finds_files_in_each_layout(tmp_path, layout, gz):
    folder = {"flat": tmp_path, "torchvision": tmp_path / "MNIST" / "raw", "named": tmp_path / "MNIST"}[layout]
    arrays = write_fake_mnist(folder, gz=gz)
    train = MNIST(tmp_path, train=True)
    test = MNIST(str(tmp_path), train=False)
    assert len(train) == 12 and len(test) == 7
    np.testing.assert_array_equal(train.data.numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(test.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_dotted_file_names_are_accepted(tmp_path):
    arrays = fake_mnist()
    for name, a in arrays.items():
        write_file(tmp_path / name.replace("-idx", ".idx"), idx_bytes(a))
    assert len(MNIST(tmp_path)) == 12


def test_sample_is_float_image_in_unit_range_and_int_label(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path)
    img, label = ds[3]
    assert isinstance(img, fastmlp.Tensor) and img.dtype == fastmlp.float32 and tuple(img.shape) == (1, 28, 28)
    np.testing.assert_array_equal(img.numpy()[0], arrays["train-images-idx3-ubyte"][3] / np.float32(255))
    assert type(label) is int and label == arrays["train-labels-idx1-ubyte"][3]


def test_data_and_targets_are_whole_split_tensors(tmp_path):
    write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path, train=False)
    assert ds.data.dtype == fastmlp.uint8 and tuple(ds.data.shape) == (7, 28, 28)
    assert ds.targets.dtype == fastmlp.int64 and tuple(ds.targets.shape) == (7,)
    assert ds.classes[3] == "3 - three" and ds.class_to_idx["9 - nine"] == 9
    assert FashionMNIST.classes[9] == "Ankle boot"


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
@pytest.mark.parametrize("train", [True, False])
def test_torchvision_old_names_alias_data_and_targets_with_its_warning(tmp_path, cls, train):
    folder = tmp_path / cls.__name__ if cls is FashionMNIST else tmp_path
    arrays = write_fake_mnist(folder)
    ds = cls(tmp_path, train=train)
    split = "train" if train else "t10k"
    for old, new, expected in (("train_data", "data", arrays[f"{split}-images-idx3-ubyte"]),
                               ("test_data", "data", arrays[f"{split}-images-idx3-ubyte"]),
                               ("train_labels", "targets", arrays[f"{split}-labels-idx1-ubyte"]),
                               ("test_labels", "targets", arrays[f"{split}-labels-idx1-ubyte"])):
        with pytest.warns(UserWarning, match=f"^{old} has been renamed {new}$"):
            value = getattr(ds, old)
        np.testing.assert_array_equal(value.numpy(), expected)
        assert np.shares_memory(value.numpy(), getattr(ds, new).numpy())
    assert len(ds.classes) == 10
    assert ds.class_to_idx == {name: i for i, name in enumerate(ds.classes)}


def test_custom_transform_gets_the_uint8_image(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    seen = []
    ds = MNIST(tmp_path, transform=lambda img: seen.append(img) or img.sum(), target_transform=lambda y: y + 100)
    total, label = ds[0]
    assert seen[0].dtype == np.uint8 and seen[0].shape == (28, 28)
    assert total == arrays["train-images-idx3-ubyte"][0].sum() and label == arrays["train-labels-idx1-ubyte"][0] + 100


@pytest.mark.parametrize("make_tf", [
    lambda: None,
    lambda: transforms.ToTensor(),
    lambda: transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,)),
                                transforms.Flatten()]),
    lambda: transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda t: t * 2)]),
])
def test_batches_equal_collated_samples(tmp_path, make_tf):
    write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path, transform=make_tf())
    idx = np.array([5, 0, 11, 3], dtype=np.int64)
    xb, yb = ds.__getbatch__(idx)
    samples = [ds[int(i)] for i in idx]
    np.testing.assert_array_equal(xb.numpy(), np.stack([s[0].numpy() for s in samples]))
    np.testing.assert_array_equal(yb.numpy(), [s[1] for s in samples])
    assert xb.dtype == fastmlp.float32 and yb.dtype == fastmlp.int64


def test_target_transform_with_vectorised_images(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path, target_transform=lambda y: float(y) / 2)
    xb, yb = ds.__getbatch__(np.array([1, 2]))
    assert yb.dtype == fastmlp.float64
    np.testing.assert_array_equal(yb.numpy(), arrays["train-labels-idx1-ubyte"][[1, 2]] / 2)


def test_loader_over_mnist_and_its_subset(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path)
    fastmlp.manual_seed(0)
    seen = np.concatenate([y.numpy() for _, y in DataLoader(ds, batch_size=5, sampler=SubsetRandomSampler(
        [0, 2, 4, 6, 8, 10]))])
    assert sorted(seen) == sorted(arrays["train-labels-idx1-ubyte"][[0, 2, 4, 6, 8, 10]])
    sub = Subset(ds, [11, 1])
    (xb, yb), = list(DataLoader(sub, batch_size=2))
    np.testing.assert_array_equal(xb.numpy()[:, 0], arrays["train-images-idx3-ubyte"][[11, 1]] / np.float32(255))


def test_loader_uses_an_overridden_getitem_of_an_mnist_subclass(tmp_path):
    arrays = write_fake_mnist(tmp_path)

    class Inverted(MNIST):
        def __getitem__(self, index):
            img, label = super().__getitem__(index)
            return 1 - img, label * 10

    ds = Inverted(tmp_path, transform=transforms.ToTensor())
    for loader in (DataLoader(ds, batch_size=4), DataLoader(Subset(ds, [0, 1, 2, 3]), batch_size=4)):
        xb, yb = next(iter(loader))
        np.testing.assert_allclose(xb.numpy()[:, 0], 1 - arrays["train-images-idx3-ubyte"][:4] / np.float32(255),
                                   rtol=0, atol=1e-6)
        np.testing.assert_array_equal(yb.numpy(), arrays["train-labels-idx1-ubyte"][:4] * 10)


def test_changing_the_transform_after_construction(tmp_path):
    write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path)
    assert tuple(ds.__getbatch__(np.array([0, 1]))[0].shape) == (2, 1, 28, 28)
    ds.transform = transforms.Compose([transforms.ToTensor(), transforms.Flatten()])
    assert tuple(ds.__getbatch__(np.array([0, 1]))[0].shape) == (2, 784)


def test_filtering_by_assigning_data_and_targets(tmp_path):
    arrays = write_fake_mnist(tmp_path)
    ds = MNIST(tmp_path)
    keep = ds.targets.numpy() < 5
    ds.data = ds.data.numpy()[keep]
    ds.targets = ds.targets.numpy()[keep]
    assert len(ds) == int(keep.sum())
    xb, _ = ds.__getbatch__(np.array([0]))
    np.testing.assert_array_equal(xb.numpy()[0, 0], arrays["train-images-idx3-ubyte"][keep][0] / np.float32(255))


def test_fashion_mnist_uses_its_own_folder(tmp_path):
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw")
    assert len(FashionMNIST(tmp_path)) == 12
    with pytest.raises(DatasetNotFoundError):
        MNIST(tmp_path)


def _md5(path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def _publish(monkeypatch, cls, folder):
    """Make the fake files in `folder` look like `cls`'s published files (their md5s become its checksums)."""
    resources = {p.name if p.name.endswith(".gz") else p.name + ".gz":
                 (((_md5(p),), ()) if p.name.endswith(".gz") else ((), (_md5(p),)))
                 for p in folder.iterdir() if p.is_file()}
    monkeypatch.setattr(cls, "resources", resources)


def test_fashion_mnist_refuses_mnist_files_in_a_shared_root(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path)
    _publish(monkeypatch, MNIST, tmp_path)
    assert len(MNIST(tmp_path)) == 12
    with pytest.raises(DatasetNotFoundError) as e:
        FashionMNIST(tmp_path)
    msg = str(e.value)
    assert f"'{tmp_path / 'train-images-idx3-ubyte.gz'}' is MNIST's file, not FashionMNIST's" in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "download=True" in msg
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="is MNIST's file"):
        FashionMNIST(None, train=False)


def test_fashion_mnist_refuses_uncompressed_mnist_files_by_content(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path, gz=False)
    _publish(monkeypatch, MNIST, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte' is MNIST's file"):
        FashionMNIST(tmp_path, train=False)


def test_fashion_mnist_takes_its_own_files_in_root_and_its_folder_first(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path)
    assert len(FashionMNIST(tmp_path)) == 12  # not MNIST's checksums: Fashion-MNIST files in root are fine
    _publish(monkeypatch, MNIST, tmp_path)
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw", arrays=fake_mnist(n_train=5, n_test=3, seed=1))
    assert len(FashionMNIST(tmp_path)) == 5 and len(MNIST(tmp_path)) == 12


def test_mnist_refuses_fashion_mnist_archives_in_a_shared_root(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path)
    _publish(monkeypatch, FashionMNIST, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="is FashionMNIST's file, not MNIST's"):
        MNIST(tmp_path)


def test_fashion_mnist_download_beside_mnist_files_goes_to_its_own_folder(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "data")
    _publish(monkeypatch, MNIST, tmp_path / "data")
    mirror = tmp_path / "mirror"
    arrays = write_fake_mnist(mirror, arrays=fake_mnist(n_train=4, n_test=2, seed=3))
    monkeypatch.setattr(FashionMNIST, "mirrors", [mirror.as_uri() + "/"])
    monkeypatch.setattr(FashionMNIST, "resources", {p.name: ((_md5(p),), ()) for p in mirror.iterdir()})
    ds = FashionMNIST(tmp_path / "data", train=False, download=True)
    assert sorted(p.name for p in (tmp_path / "data" / "FashionMNIST" / "raw").iterdir()) == sorted(
        n + ".gz" for n in arrays)
    np.testing.assert_array_equal(ds.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_refuses_the_real_mnist(tmp_path, monkeypatch):
    root = require_real_mnist()
    for sub in (root, root / "MNIST" / "raw", root / "MNIST"):
        if (sub / "train-images-idx3-ubyte.gz").exists():
            break
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(sub / name)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.gz' is MNIST's file"):
        FashionMNIST(None)
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw", arrays=fake_mnist(n_train=3))
    (tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte.gz' is MNIST's file"):
        FashionMNIST(None)
    assert len(MNIST(None)) == 60000


# ---- where files are looked for when root is None --------------------------------------------------
def test_root_none_reads_fastmlp_data(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "d")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "d"))
    assert MNIST(None).root == str(tmp_path / "d") and len(MNIST()) == 12


def test_root_none_without_env_uses_the_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fake_mnist(tmp_path / "cache" / "fastmlp" / "MNIST" / "raw")
    ds = MNIST()
    assert ds.root == str(tmp_path / "cache" / "fastmlp") and len(ds) == 12


def test_root_none_falls_back_to_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    from fastmlp.datasets import default_root

    assert default_root() == str(tmp_path / ".cache" / "fastmlp")


# ---- clear errors ----------------------------------------------------------------------------------
def test_missing_files_say_where_and_how_to_provide_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        MNIST(tmp_path / "nothing")
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "nothing" / "MNIST" / "raw") in msg
    assert "FASTMLP_DATA" in msg and "download=True" in msg and "--data" in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_labels_only(tmp_path):
    arrays = fake_mnist()
    del arrays["t10k-labels-idx1-ubyte"]
    write_fake_mnist(tmp_path, arrays=arrays)
    assert len(MNIST(tmp_path, train=True)) == 12
    with pytest.raises(DatasetNotFoundError, match="MNIST test labels not found: no t10k-labels-idx1-ubyte"):
        MNIST(tmp_path, train=False)


def test_truncated_file_names_it_and_says_what_to_do(tmp_path):
    write_fake_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(IdxError) as e:
        MNIST(tmp_path)
    msg = str(e.value)
    assert str(p) in msg and "truncated" in msg and "download=True" in msg and "FASTMLP_DATA" in msg


def test_corrupted_gzip_names_the_file(tmp_path):
    write_fake_mnist(tmp_path, gz=True)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 2 + 1] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(IdxError, match="t10k-images-idx3-ubyte.gz"):
        MNIST(tmp_path, train=False)


def test_wrong_image_dimensions(tmp_path):
    arrays = fake_mnist()
    arrays["train-images-idx3-ubyte"] = np.zeros((12, 28, 27), dtype=np.uint8)
    write_fake_mnist(tmp_path, arrays=arrays)
    with pytest.raises(IdxError, match=r"expected MNIST images, uint8 \[N, 28, 28\]; the file holds uint8 "
                                       r"\[12, 28, 27\]"):
        MNIST(tmp_path)


def test_labels_that_are_images(tmp_path):
    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"] = arrays["train-images-idx3-ubyte"]
    write_fake_mnist(tmp_path, arrays=arrays)
    with pytest.raises(IdxError, match=r"expected MNIST labels, uint8 \[N\]"):
        MNIST(tmp_path)


def test_image_and_label_counts_must_match(tmp_path):
    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:10]
    write_fake_mnist(tmp_path, arrays=arrays)
    with pytest.raises(IdxError, match="holds 12 images but .* holds 10 labels"):
        MNIST(tmp_path)


def test_label_out_of_range(tmp_path):
    arrays = fake_mnist()
    arrays["t10k-labels-idx1-ubyte"][2] = 10
    write_fake_mnist(tmp_path, arrays=arrays)
    with pytest.raises(IdxError, match="label 10 is out of range for 10 classes"):
        MNIST(tmp_path, train=False)


# ---- the real MNIST ------------------------------------------------------------------------------
def test_real_mnist_matches_its_published_facts():
    root = require_real_mnist()
    train = MNIST(root, train=True)
    test = MNIST(root, train=False)
    assert len(train) == 60000 and len(test) == 10000
    assert train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # the per-class test counts printed by the dropout-MLP tutorial
    assert np.bincount(test.targets.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(train.targets.numpy()).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                                           5949]
    # the mean and std used by the usual Normalize((0.1307,), (0.3081,))
    counts = np.bincount(train.data.numpy().ravel(), minlength=256)
    values = np.arange(256) / 255
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert abs(mean - 0.1307) < 5e-5 and abs(std - 0.3081) < 5e-5
    img, label = train[0]
    assert label == 5 and tuple(img.shape) == (1, 28, 28) and img.dtype == fastmlp.float32
    xb, yb = next(iter(DataLoader(test, batch_size=64)))
    assert tuple(xb.shape) == (64, 1, 28, 28) and yb.tolist()[:3] == [7, 2, 1]
    np.testing.assert_array_equal(xb.numpy()[0, 0], test.data.numpy()[0] / np.float32(255))
