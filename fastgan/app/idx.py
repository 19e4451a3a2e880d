"""MNIST's idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, and the t10k pair),
plain or gzipped, read by fastgan itself: nothing is downloaded. The format is a big-endian
header (zero, zero, dtype code, number of dimensions, then one uint32 per dimension) followed by
the values; MNIST's are unsigned bytes (dtype code 0x08)."""
import gzip
import os
import struct
from typing import Optional

import torch

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


class IdxError(ValueError):
    pass


def find(folder: str, stem: str) -> Optional[str]:
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def is_mnist_folder(folder: str) -> bool:
    return os.path.isdir(folder) and find(folder, IMAGES) is not None


def read(path: str, dims: int) -> torch.Tensor:
    """The uint8 array of an idx file with `dims` dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
        raise IdxError(f"{path!r} cannot be read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != dims:
        head = raw[:4].hex()
        raise IdxError(f"{path!r} is not an idx file of unsigned bytes with {dims} dimensions (header {head}; "
                       f"expected 000008{dims:02x})")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise IdxError(f"{path!r} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    count = 1
    for s in shape:
        count *= s
    if len(raw) - header != count:
        raise IdxError(f"{path!r} holds {len(raw) - header} values where its header {tuple(shape)} says {count}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).view(*shape)


def read_mnist(folder: str):
    """(images uint8 (N, 1, 28, 28), labels int64 (N,)) of the training set in folder."""
    images = read(find(folder, IMAGES), 3)[:, None]
    labels_path = find(folder, LABELS)
    if labels_path is None:
        raise IdxError(f"{folder!r} has {IMAGES} but not {LABELS}[.gz]")
    labels = read(labels_path, 1).long()
    if labels.numel() != images.size(0):
        raise IdxError(f"{folder!r}: {images.size(0)} images but {labels.numel()} labels")
    if int(labels.max()) > 9:
        raise IdxError(f"{folder!r}: labels must lie in 0..9, found {int(labels.max())}")
    return images, labels
