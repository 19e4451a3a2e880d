"""CIFAR-10 as its authors publish it, read by fastgan itself (nothing is downloaded): the file
`cifar-10-python.tar.gz`, or the `cifar-10-batches-py` folder it extracts to (or a folder holding
that one). Training uses the five training batches (50,000 images, labels included); the test
batch is left alone. Each batch is a pickled dict of `data` (N x 3072 uint8, the red plane, then
green, then blue, row by row) and `labels`; `batches.meta` names the classes. The pickles are
read with an unpickler that builds nothing but those plain values and numpy arrays, so a file
that is not CIFAR-10 cannot run code."""
import io
import os
import pickle
import tarfile
from typing import List, Optional, Tuple

import numpy as np
import torch

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
META = "batches.meta"
# What numpy needs to rebuild an array from a pickle (numpy 1 and 2 spell the modules two ways;
# protocol 5 rebuilds from a buffer), and how Python 3's protocol 2 spells a bytes value.
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class CifarError(ValueError):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays and lists")


def folder_of(source: str) -> Optional[str]:
    """The cifar-10-batches-py folder at or directly under `source`, else None."""
    for folder in (source, os.path.join(source, FOLDER)):
        if os.path.isfile(os.path.join(folder, TRAIN_BATCHES[0])) and os.path.isfile(os.path.join(folder, META)):
            return folder
    return None


def is_archive(source: str) -> bool:
    return os.path.isfile(source) and (os.path.basename(source).lower() == ARCHIVE or (
        source.lower().endswith((".tar.gz", ".tgz")) and _archive_has_batches(source)))


def _archive_has_batches(path: str) -> bool:
    try:
        with tarfile.open(path, "r:gz") as tar:
            return any(m.name.endswith(f"{FOLDER}/{TRAIN_BATCHES[0]}") for m in tar.getmembers())
    except (OSError, tarfile.TarError):
        return False


def _load(raw: bytes, where: str) -> dict:
    try:
        value = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a truncated or foreign file: any unpickling error, one message
        raise CifarError(f"{where} is not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise CifarError(f"{where} is not a CIFAR-10 batch (it holds a {type(value).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in value.items()}


def _batch(raw: bytes, where: str) -> Tuple[torch.Tensor, torch.Tensor]:
    d = _load(raw, where)
    try:
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as exc:
        raise CifarError(f"{where} is not a CIFAR-10 batch (no usable {exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise CifarError(f"{where} is not a CIFAR-10 batch: data of shape {data.shape} with {labels.size} labels "
                         f"(expected N x 3072 and N labels)")
    if labels.size and not (0 <= labels.min() and labels.max() < 10):
        raise CifarError(f"{where} has labels outside 0-9")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _class_names(raw: Optional[bytes], where: str) -> List[str]:
    if raw is None:
        return [str(i) for i in range(10)]
    names = _load(raw, where).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise CifarError(f"{where} does not name the 10 classes")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read(source: str) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(uint8 images (50000, 3, 32, 32), int64 labels, class names) from the archive or folder."""
    raws = {}
    if os.path.isdir(source):
        folder = folder_of(source)
        for name in TRAIN_BATCHES + (META,):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    raws[name] = f.read()
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:
                for member in tar.getmembers():
                    name = os.path.basename(member.name)
                    if member.isfile() and name in TRAIN_BATCHES + (META,):
                        raws[name] = tar.extractfile(member).read()
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise CifarError(f"{source!r} cannot be read as {ARCHIVE} ({exc})") from None
    missing = [name for name in TRAIN_BATCHES if name not in raws]
    if missing:
        raise CifarError(f"{source!r} lacks CIFAR-10's {', '.join(missing)} (the five training batches are needed)")
    batches = [_batch(raws[name], f"{name} in {source!r}") for name in TRAIN_BATCHES]
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    return images, labels, _class_names(raws.get(META), f"{META} in {source!r}")
