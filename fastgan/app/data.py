"""Training data for `fastgan train`: the built-in digits, a folder of images (searched
recursively; labels from sub-folder names), a .zip of images, or a folder holding MNIST's idx
files. Everything is decoded once
into a uint8 tensor (N, C, S, S) in memory, with labels when there are any."""
import functools
import io
import os
import zipfile
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F

from . import idx

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BUILTIN = ("digits",)


class DataError(ValueError):
    """Bad training data: the CLI prints it as one line and exits non-zero."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 (N, C, S, S)
    labels: Optional[torch.Tensor]  # int64 (N,) or None
    class_names: List[str]
    skipped: int = 0

    @property
    def num_classes(self):
        return len(self.class_names)

    def as_float(self, index):
        """Images scaled to [-1, 1] as float32."""
        return self.images[index].float().div_(127.5).sub_(1.0)


def load(source: str, image_size: int, channels: int) -> ImageData:
    if source in BUILTIN:
        return _digits(image_size, channels)
    if source.lower().endswith(".zip"):
        if not os.path.isfile(source):
            raise DataError(f"data file {source!r} does not exist")
        return _from_zip(source, image_size, channels)
    if os.path.isfile(source):
        raise DataError(f"--data {source!r} is a file; expected a folder of images, a .zip of them, or one of "
                        f"{', '.join(BUILTIN)}")
    if not os.path.isdir(source):
        raise DataError(f"data folder {source!r} does not exist (expected a folder of images, a .zip, or one of "
                        f"{', '.join(BUILTIN)})")
    if idx.is_mnist_folder(source):
        return _mnist(source, image_size, channels)
    return _from_folder(source, image_size, channels)


def _mnist(folder, image_size, channels):
    """MNIST's idx files (see idx.py), resized to image_size when it is not 28."""
    try:
        images, labels = idx.read_mnist(folder)
    except idx.IdxError as exc:
        raise DataError(str(exc)) from None
    if images.size(-1) != image_size:
        x = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    return ImageData(images.expand(-1, channels, -1, -1).contiguous(), labels, [str(i) for i in range(10)])


def _digits(image_size, channels):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the built-in 'digits' data comes from scikit-learn: pip install 'fastgan[train]'") from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp_(0, 1)
    x = x.expand(-1, channels, -1, -1)
    images = (x * 255).round().to(torch.uint8).contiguous()
    return ImageData(images, torch.tensor(digits.target, dtype=torch.long), [str(i) for i in range(10)])


def _decode(raw: bytes, image_size: int, channels: int) -> Optional[torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            w, h = img.size
            side = min(w, h)  # centre crop to a square, then resize
            img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
            t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return t.view(image_size, image_size, channels).permute(2, 0, 1).contiguous()


def _build(entries, image_size, channels, where):
    """entries: (label_name or None, read() -> bytes)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise DataError("reading image files needs Pillow: pip install 'fastgan[train]'") from None
    if not entries:
        raise DataError(f"{where} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    images, names, skipped = [], [], 0
    for name, read in entries:
        img = _decode(read(), image_size, channels)
        if img is None:
            skipped += 1
            continue
        images.append(img)
        names.append(name)
    if not images:
        raise DataError(f"none of the {skipped} images in {where} could be read")
    class_names = sorted({n for n in names if n is not None})
    labels = None
    if len(class_names) > 1 and all(n is not None for n in names):
        index = {n: i for i, n in enumerate(class_names)}
        labels = torch.tensor([index[n] for n in names], dtype=torch.long)
    else:
        class_names = []
    return ImageData(torch.stack(images), labels, class_names, skipped)


def _label_of(relative_path):
    parts = relative_path.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else None


def _from_folder(root, image_size, channels):
    entries = []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(dirpath, f)
                entries.append((_label_of(os.path.relpath(path, root)), lambda p=path: open(p, "rb").read()))
    return _build(entries, image_size, channels, f"data folder {root!r}")


def _from_zip(path, image_size, channels):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path!r} is not a readable .zip file") from None
    with archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_EXTENSIONS) and not n.endswith("/"))
        entries = [(_label_of(n), lambda n=n: archive.read(n)) for n in names]
        return _build(entries, image_size, channels, f"archive {path!r}")


@functools.lru_cache(maxsize=2)  # one epoch's shard serves all of its steps
def _epoch_shard(n: int, seed: int, rank: int, world_size: int, epoch: int) -> torch.Tensor:
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's indices for batch `step`. A DistributedSampler shards a fresh permutation
    per epoch (drawn from seed and epoch) over the ranks, a different shard per rank and
    epoch, so the data order depends on the step alone (a resumed run sees the same batches)
    and the ranks' batches together are the batch one process with batch_size * world_size
    would draw."""
    shard = (n + world_size - 1) // world_size  # the sampler pads so every rank has as many
    per_epoch = max(1, shard // batch_size)
    epoch, k = divmod(step, per_epoch)
    indices = _epoch_shard(n, seed, rank, world_size, epoch)
    if shard < batch_size:
        indices = indices.repeat((batch_size + shard - 1) // shard)
    return indices[k * batch_size:(k + 1) * batch_size]
