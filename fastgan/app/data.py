"""Training data for `fastgan train`: the built-in digits, a folder of images (searched
recursively; labels from sub-folder names), a .zip of images, a folder holding MNIST's idx
files, or CIFAR-10's python archive or folder. A folder or .zip with a `dataset.json` (as
StyleGAN2-ADA's dataset_tool writes) takes its labels from it. Everything is decoded once into a
uint8 tensor (N, C, S, S) in memory, with labels when there are any."""
import functools
import io
import json
import os
import zipfile
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F

from . import cifar, idx

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
    if cifar.is_archive(source) or (os.path.isdir(source) and cifar.folder_of(source)):
        return _cifar(source, image_size, channels)
    if source.lower().endswith(".zip"):
        if not os.path.isfile(source):
            raise DataError(f"data file {source!r} does not exist")
        return _from_zip(source, image_size, channels)
    if os.path.isfile(source):
        raise DataError(f"--data {source!r} is a file; expected a folder of images, a .zip of them, CIFAR-10's "
                        f"{cifar.ARCHIVE}, or one of {', '.join(BUILTIN)}")
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
    images = _resized(images, image_size)
    return ImageData(images.expand(-1, channels, -1, -1).contiguous(), labels, [str(i) for i in range(10)])


def _resized(images, image_size):
    """uint8 (N, C, s, s) images at image_size, bilinear (the fixed-size datasets)."""
    if images.size(-1) == image_size:
        return images
    x = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _cifar(source, image_size, channels):
    try:
        images, labels, names = cifar.read(source)
    except cifar.CifarError as exc:
        raise DataError(str(exc)) from None
    if channels == 1:  # ITU-R 601 luma, as Pillow's convert("L") computes it
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    return ImageData(_resized(images, image_size).contiguous(), labels, names)


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


def _build(entries, image_size, channels, where, numbered=None):
    """entries: (label_name or None, read() -> bytes). numbered: the number of classes when the
    labels are class numbers already (dataset.json), which are kept as they are."""
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
    if numbered:
        return ImageData(torch.stack(images), torch.tensor(names, dtype=torch.long),
                         [str(i) for i in range(numbered)], skipped)
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


def _dataset_json_labels(raw, names, where):
    """({image name: class number}, number of classes) from StyleGAN2-ADA's dataset.json
    ({"labels": [[name, class], ...]} or {"labels": null}), or None when it gives no labels."""
    try:
        labels = json.loads(raw).get("labels")
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{where}: dataset.json is not a JSON object ({exc})") from None
    if labels is None:
        return None
    try:
        by_name = {str(name).replace("\\", "/"): int(label) for name, label in labels}
    except (TypeError, ValueError):
        raise DataError(f"{where}: dataset.json's labels must be a list of [file name, class number] pairs") from None
    unlabelled = [n for n in names if n not in by_name]
    if unlabelled:
        raise DataError(f"{where}: dataset.json gives no label for {unlabelled[0]!r}"
                        + (f" and {len(unlabelled) - 1} other image(s)" if len(unlabelled) > 1 else ""))
    if any(label < 0 for label in by_name.values()):
        raise DataError(f"{where}: dataset.json has a negative class number")
    return by_name, max(by_name[n] for n in names) + 1


def _labelled(names, read, dataset_json, image_size, channels, where):
    """_build over the images `names` (relative, with /), labelled by dataset.json when there is
    one that gives labels, else by their first folder."""
    found = _dataset_json_labels(dataset_json, names, where) if dataset_json is not None else None
    if found is None:
        return _build([(_label_of(n), lambda n=n: read(n)) for n in names], image_size, channels, where)
    by_name, classes = found
    return _build([(by_name[n], lambda n=n: read(n)) for n in names], image_size, channels, where, numbered=classes)


def _from_folder(root, image_size, channels):
    names = []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                names.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))

    def read(name):
        with open(os.path.join(root, name), "rb") as f:
            return f.read()

    meta = os.path.join(root, "dataset.json")
    dataset_json = read("dataset.json") if os.path.isfile(meta) else None
    return _labelled(names, read, dataset_json, image_size, channels, f"data folder {root!r}")


def _from_zip(path, image_size, channels):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path!r} is not a readable .zip file") from None
    with archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_EXTENSIONS) and not n.endswith("/"))
        dataset_json = archive.read("dataset.json") if "dataset.json" in archive.namelist() else None
        return _labelled(names, archive.read, dataset_json, image_size, channels, f"archive {path!r}")


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
