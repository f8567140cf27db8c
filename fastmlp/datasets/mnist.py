"""MNIST and Fashion-MNIST from their idx files (``torchvision.datasets.MNIST`` / ``FashionMNIST``).

Where the files are looked for, in order, for ``root``:
``root/<Name>/raw`` (torchvision's layout), ``root/<Name>`` and ``root`` itself,
where ``<Name>`` is ``MNIST`` or ``FashionMNIST``; each file may be gzip-compressed
(``.gz``) or raw. ``root=None`` means ``$FASTMLP_DATA``, else the per-user cache
folder (``$XDG_CACHE_HOME/fastmlp`` or ``~/.cache/fastmlp``). ``download=True``
fetches missing files into ``root/<Name>/raw`` from the public mirrors.

The two datasets use the same file names, so a file directly in ``root`` (a
folder they may share) is only taken when it is not the other dataset's: its
md5 (or that of its decompressed content) is compared with the other dataset's
published checksums. FashionMNIST therefore never reads MNIST's files from a
folder of MNIST files: it says so and where its own files go (``download=True``
fetches them there), and MNIST likewise refuses Fashion-MNIST's archives.

A sample is ``(image, label)``: a float32 tensor [1, 28, 28] in [0, 1] (what
``ToTensor()`` gives) and an int. A custom ``transform`` receives the image as a
uint8 NumPy array [28, 28]. ``.data`` (uint8 [N, 28, 28]) and ``.targets``
(int64 [N]) are the whole split as tensors.

Batches: with the transform None, ToTensor(), or a Compose of ToTensor followed
by Normalize/Flatten, ``__getbatch__`` makes a whole batch with one gather from a
float32 copy of the split that is decoded once and shared by every dataset
object reading the same file. Other transforms run per sample.
"""
from __future__ import annotations

import os
import warnings
import weakref
import zlib
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from ..tensor import Tensor, _wrap
from ..transforms import ToTensor, batch_plan
from ..utils.data.collate import collate
from ..utils.data.dataset import Dataset, rowwise
from .download import DownloadError, download_file, file_md5
from .idx import IdxError, read_idx
from .paths import DATA_ENV, default_root

__all__ = ["MNIST", "FashionMNIST", "DatasetNotFoundError"]

_SPLIT_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_ALL_FILES = _SPLIT_FILES[True] + _SPLIT_FILES[False]

# Decoded arrays, shared between dataset objects that read the same file; an entry
# lives as long as some dataset holds its array.
_decoded: "weakref.WeakValueDictionary[tuple, np.ndarray]" = weakref.WeakValueDictionary()


# (file key, dataset class name) -> the name of the other dataset the file belongs to, or None
_ownership: dict = {}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for; the message says how to provide them."""


def _file_key(path: str, kind: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, kind)


class MNIST(Dataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images (``torchvision.datasets.MNIST``).

    Args:
        root: the folder holding the idx files (see the module docstring); None for
            ``$FASTMLP_DATA`` or the cache folder.
        train: the training split (True) or the test split (False).
        transform: applied to each image (a uint8 [28, 28] array); None gives ToTensor()'s result.
        target_transform: applied to each label (an int).
        download: fetch the files from the public mirrors when they are missing.
    """

    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    # file name: (published md5s of the .gz file, md5s of its decompressed content)
    resources = {
        "train-images-idx3-ubyte.gz": (("f68b3c2dcbeaaa9fbdd348bbdeb94873",), ("6bbc9ace898e44ae57da46a324031adb",)),
        "train-labels-idx1-ubyte.gz": (("d53e105ee54ea40749a09fcbcd1e9432",), ("a25bea736e30d166cdddb491f175f624",)),
        "t10k-images-idx3-ubyte.gz": (("9fb629c4189551a2d022fa330f9573f3",), ("2646ac647ad5339dbf082846283269ea",)),
        "t10k-labels-idx1-ubyte.gz": (("ec29112dd5afa0611ce80d1b7f02629c",), ("27ae3e4e09519cfbb04c329615203637",)),
    }
    _lookalikes: tuple = ()  # set below the classes: the datasets whose files share these names
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]
    image_size = (28, 28)

    def __init__(self, root: Union[str, os.PathLike, None] = None, train: bool = True,
                 transform: Optional[Callable] = None, target_transform: Optional[Callable] = None,
                 download: bool = False) -> None:
        self.root = default_root() if root is None else os.path.expanduser(os.fspath(root))
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform
        if download:
            self.download()
        images_file, labels_file = (self._locate(name) for name in _SPLIT_FILES[self.train])
        self._images = self._read(images_file, "images")
        self._labels = self._read(labels_file, "labels")
        self._check_pair(images_file, labels_file)
        self._float: Optional[np.ndarray] = None
        self._plan_for: Any = _NOT_SET
        self._plan: Optional[list] = None

    # ---- where the files are ---------------------------------------------------------------
    @property
    def raw_folder(self) -> str:
        """``root/<Name>/raw``: where downloads go (torchvision's layout)."""
        return os.path.join(self.root, type(self).__name__, "raw")

    def _search_dirs(self) -> list:
        return [self.raw_folder, os.path.join(self.root, type(self).__name__), self.root]

    def _candidates(self, name: str) -> Iterator[tuple[str, bool]]:
        """Existing files for `name`, in search order, each with whether it lies in the shared ``root``."""
        variants = (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz")
        dirs = self._search_dirs()
        for i, folder in enumerate(dirs):
            for v in variants:
                p = os.path.join(folder, v)
                if os.path.isfile(p):
                    yield p, i == len(dirs) - 1

    def _find(self, name: str) -> Optional[str]:
        """The first file for `name` that is this dataset's (files in ``root`` that are another's are skipped)."""
        for path, shared in self._candidates(name):
            if not shared or self._owner_of(path) is None:
                return path
        return None

    def _owner_of(self, path: str) -> Optional[str]:
        """The name of the look-alike dataset whose published checksum `path` has, or None."""
        key = (_file_key(path, "checksum"), type(self).__name__)
        if key in _ownership:
            return _ownership[key]
        owner = None
        gz = _is_gzip(path)
        for other in self._lookalikes:
            md5s = {m for archive, _ in other.resources.values() for m in archive}
            content_md5s = {m for _, content in other.resources.values() for m in content}
            if gz and (file_md5(path) in md5s or (content_md5s and _content_md5(path) in content_md5s)):
                owner = other.__name__
            elif not gz and content_md5s and file_md5(path) in content_md5s:
                owner = other.__name__
            if owner is not None:
                break
        _ownership[key] = owner
        return owner

    def _how_to_provide(self, offer_download: bool = True) -> str:
        files = ", ".join(f + ".gz" for f in _ALL_FILES)
        where = " or ".join(self.mirrors) if self.mirrors else "the dataset's website"
        last = (f"download them: download=True (on the command line: leave out --no-download) fetches them from "
                f"{where}" if offer_download else f"download them yourself from {where}")
        return (f"To provide {type(self).__name__}, do one of:\n"
                f"  - put the four idx files {files} (or their uncompressed versions) in one of those folders;\n"
                f"  - point {DATA_ENV} at a folder that holds them (export {DATA_ENV}=/path/to/folder), or pass "
                f"root=FOLDER (on the command line: --data FOLDER);\n"
                f"  - {last}.")

    def _locate(self, name: str) -> str:
        path = self._find(name)
        if path is None:
            split = "training" if self.train else "test"
            kind = "images" if "images" in name else "labels"
            me = type(self).__name__
            for other_path, shared in self._candidates(name):
                owner = self._owner_of(other_path) if shared else None
                if owner is not None:
                    raise DatasetNotFoundError(
                        f"{me} {split} {kind} not found: '{other_path}' is {owner}'s file, not {me}'s (its "
                        f"checksum is {owner}'s published one; the two datasets use the same file names). "
                        f"{me}'s files go in their own folder, '{self.raw_folder}' (torchvision's layout) or "
                        f"'{os.path.join(self.root, me)}'; download=True (on the command line: leave out "
                        f"--no-download) fetches them into '{self.raw_folder}'.")
            looked = "\n".join(f"  {d}" for d in self._search_dirs())
            raise DatasetNotFoundError(f"{me} {split} {kind} not found: no {name} or {name}.gz in\n"
                                       f"{looked}\n{self._how_to_provide()}")
        return path

    def download(self) -> None:
        """Fetch the files that are missing into ``raw_folder``, verifying their checksums."""
        for gz_name, (md5s, content_md5s) in self.resources.items():
            if self._find(gz_name[:-3]) is not None:
                continue
            try:
                download_file(gz_name, self.raw_folder, self.mirrors, md5s, content_md5s)
            except DownloadError as e:
                raise DownloadError(f"{type(self).__name__}: {e}\nThe files are looked for in:\n"
                                    + "\n".join(f"  {d}" for d in self._search_dirs()) + "\n"
                                    + self._how_to_provide(offer_download=False)) from None

    # ---- reading ------------------------------------------------------------------------------
    def _read(self, path: str, kind: str) -> np.ndarray:
        key = _file_key(path, kind)
        arr = _decoded.get(key)
        if arr is not None:
            return arr
        try:
            arr = read_idx(path)
        except IdxError as e:
            raise IdxError(f"{e}\n{self._fix_hint(path)}") from None
        h, w = self.image_size
        if kind == "images" and (arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (h, w)):
            raise IdxError(f"'{path}': expected {type(self).__name__} images, uint8 [N, {h}, {w}]; the file holds "
                           f"{arr.dtype} {list(arr.shape)}\n{self._fix_hint(path)}")
        if kind == "labels":
            if arr.dtype != np.uint8 or arr.ndim != 1:
                raise IdxError(f"'{path}': expected {type(self).__name__} labels, uint8 [N]; the file holds "
                               f"{arr.dtype} {list(arr.shape)}\n{self._fix_hint(path)}")
            if arr.size and int(arr.max()) >= len(self.classes):
                raise IdxError(f"'{path}': label {int(arr.max())} is out of range for {len(self.classes)} classes; "
                               f"the file is corrupted\n{self._fix_hint(path)}")
            arr = arr.astype(np.int64)
        _decoded[key] = arr
        return arr

    def _fix_hint(self, path: str) -> str:
        return (f"Replace '{path}' with a good copy, or delete it and load with download=True "
                f"(or point {DATA_ENV} at a folder with intact files).")

    def _check_pair(self, images_file: str, labels_file: str) -> None:
        if len(self._images) != len(self._labels):
            raise IdxError(f"{type(self).__name__}: '{images_file}' holds {len(self._images)} images but "
                           f"'{labels_file}' holds {len(self._labels)} labels; one of them is from another "
                           f"split or dataset, or corrupted")

    def _float_images(self) -> np.ndarray:
        """The split as float32 [N, 1, 28, 28] in [0, 1], decoded once."""
        if self._float is None:
            images = self._images
            key = ("float32", id(images))
            cached = _decoded.get(key)
            if cached is None or cached.shape[0] != images.shape[0]:
                cached = ToTensor()._batch(images)
                _decoded[key] = cached
                weakref.finalize(images, _decoded.pop, key, None)
            self._float = cached
        return self._float

    # ---- the dataset protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        i = int(index)
        img = self._images[i]
        if self.transform is None:
            img = ToTensor()(img)
        else:
            img = self.transform(img.copy())
        target = int(self._labels[i])
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @rowwise
    def __getbatch__(self, indices: np.ndarray) -> tuple[Any, Any]:
        """The collated batch of `indices` (as default_collate of the samples would give it)."""
        if self.transform is not self._plan_for:
            self._plan = batch_plan(self.transform)
            self._plan_for = self.transform
        plan = self._plan
        if plan is None:
            return collate([self[i] for i in indices.tolist()], indices.tolist())
        x = self._float_images().take(indices, axis=0)
        for step in plan:
            x = step(x)
        y = self._labels.take(indices)
        if self.target_transform is not None:
            tt = self.target_transform
            return _wrap(x), collate([tt(t) for t in y.tolist()], indices.tolist())
        return _wrap(x), _wrap(y)

    # ---- whole-split views, as torchvision ----------------------------------------------------
    @property
    def data(self) -> Tensor:
        """All images of the split, uint8 [N, 28, 28] (shares memory with the dataset)."""
        return _wrap(self._images)

    @data.setter
    def data(self, value) -> None:
        arr = np.ascontiguousarray(value._host() if isinstance(value, Tensor) else np.asarray(value))
        h, w = self.image_size
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (h, w):
            raise ValueError(f"{type(self).__name__}.data must be uint8 [N, {h}, {w}]; got {arr.dtype} "
                             f"{list(arr.shape)}")
        self._images = arr
        self._float = None

    @property
    def targets(self) -> Tensor:
        """All labels of the split, int64 [N] (shares memory with the dataset)."""
        return _wrap(self._labels)

    @targets.setter
    def targets(self, value) -> None:
        arr = np.ascontiguousarray(value._host() if isinstance(value, Tensor) else np.asarray(value))
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{type(self).__name__}.targets must be integer [N]; got {arr.dtype} {list(arr.shape)}")
        self._labels = arr.astype(np.int64, copy=False)

    @property
    def class_to_idx(self) -> dict:
        """Class name -> label (``torchvision.datasets.MNIST.class_to_idx``)."""
        return {c: i for i, c in enumerate(self.classes)}

    # torchvision's old names for data and targets, still answered with its deprecation warning
    # (tutorials written before torchvision 0.2.2 use them).
    @property
    def train_data(self) -> Tensor:
        """Deprecated name of ``data`` (``torchvision.datasets.MNIST.train_data``)."""
        warnings.warn("train_data has been renamed data", stacklevel=2)
        return self.data

    @property
    def test_data(self) -> Tensor:
        """Deprecated name of ``data`` (``torchvision.datasets.MNIST.test_data``)."""
        warnings.warn("test_data has been renamed data", stacklevel=2)
        return self.data

    @property
    def train_labels(self) -> Tensor:
        """Deprecated name of ``targets`` (``torchvision.datasets.MNIST.train_labels``)."""
        warnings.warn("train_labels has been renamed targets", stacklevel=2)
        return self.targets

    @property
    def test_labels(self) -> Tensor:
        """Deprecated name of ``targets`` (``torchvision.datasets.MNIST.test_labels``)."""
        warnings.warn("test_labels has been renamed targets", stacklevel=2)
        return self.targets

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append("    Transform: " + repr(self.transform).replace("\n", "\n    "))
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform!r}")
        return "\n".join(lines)


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: 28x28 grey images of 10 kinds of clothing, in MNIST's format
    (``torchvision.datasets.FashionMNIST``)."""

    mirrors = [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ]
    resources = {
        "train-images-idx3-ubyte.gz": (("8d4fb7e6c68d591d4c3dfef9ec88bf0d",), ()),
        "train-labels-idx1-ubyte.gz": (("25c81989df183df01b3e8a0aad5dffbe",), ()),
        "t10k-images-idx3-ubyte.gz": (("bef4ecab320f06d8554ea6380940ec79",), ()),
        "t10k-labels-idx1-ubyte.gz": (("bb300cfdad3c16e7a12a480ee83cd310",), ()),
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


# Datasets whose files have the same names: a file in the shared root that has the other's checksum is not taken.
MNIST._lookalikes = (FashionMNIST,)
FashionMNIST._lookalikes = (MNIST,)


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _content_md5(path: str) -> Optional[str]:
    """md5 of the decompressed content of a gzip file; None when it can't be decompressed."""
    try:
        return file_md5(path, decompress=True)
    except (OSError, EOFError, zlib.error):
        return None


class _NotSet:
    pass


_NOT_SET = _NotSet()
