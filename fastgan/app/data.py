"""Training data for `fastgan train`: the built-in digits, a folder of images (searched
recursively; labels from sub-folder names), a .zip of images, a folder holding MNIST's idx
files, or CIFAR-10's python archive or folder. A folder or .zip with a `dataset.json` (as
StyleGAN2-ADA's dataset_tool writes) takes its labels from it. Images come as a uint8 tensor
(N, C, S, S), with labels when there are any. A folder or .zip is decoded once, on all cores,
into a cache file that this and later runs memory-map (cache.py); the fixed-size formats are
read into memory."""
import functools
import io
import json
import multiprocessing
import os
import sys
import zipfile
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import cache, cifar, idx

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


def load(source: str, image_size: int, channels: int, cache_dir: Optional[str] = None, log=None) -> ImageData:
    """The images of `source` at image_size x image_size with `channels` channels. cache_dir:
    where a folder's or a .zip's decoded images are cached (None: decoded into memory)."""
    log = log or (lambda *_: None)
    if source in BUILTIN:
        return _digits(image_size, channels)
    if cifar.is_archive(source) or (os.path.isdir(source) and cifar.folder_of(source)):
        return _cifar(source, image_size, channels)
    if source.lower().endswith(".zip"):
        if not os.path.isfile(source):
            raise DataError(f"data file {source!r} does not exist")
        return _cached(source, image_size, channels, cache_dir, log, _from_zip)
    if os.path.isfile(source):
        raise DataError(f"--data {source!r} is a file; expected a folder of images, a .zip of them, CIFAR-10's "
                        f"{cifar.ARCHIVE}, or one of {', '.join(BUILTIN)}")
    if not os.path.isdir(source):
        raise DataError(f"data folder {source!r} does not exist (expected a folder of images, a .zip, or one of "
                        f"{', '.join(BUILTIN)})")
    if idx.is_mnist_folder(source):
        return _mnist(source, image_size, channels)
    return _cached(source, image_size, channels, cache_dir, log, _from_folder)


def _cached(source, image_size, channels, cache_dir, log, decode):
    """decode(source, image_size, channels, entry) through the cache entry of its files."""
    if cache_dir is None:
        return decode(source, image_size, channels, None)
    counted = lambda name: _is_image(name) or name == "dataset.json"  # noqa: E731  (what _from_folder reads)
    entry = cache.Entry(cache_dir, cache.key(source, image_size, channels, counted))
    try:
        if entry.acquire():
            log(f"decoding {source!r} once into {entry.npy} (later runs map it)")
            try:
                decode(source, image_size, channels, entry)
            except BaseException:
                entry.abandon()
                raise
            finally:
                entry.release()
    except cache.CacheWriteError as exc:
        raise DataError(f"the data cache {cache_dir!r} cannot be written ({exc}); set --data-cache to a writable "
                        "folder, or to 'none'") from None
    images, meta = entry.read()
    labels = None if meta["labels"] is None else torch.tensor(meta["labels"], dtype=torch.long)
    return ImageData(torch.from_numpy(images), labels, meta["class_names"], meta["skipped"])


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


def _decode(raw: bytes, image_size: int, channels: int) -> Optional[np.ndarray]:
    """uint8 (C, S, S), or None when unreadable. numpy only: it runs in forked decoding
    processes, where torch's thread pool must not be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            w, h = img.size
            side = min(w, h)  # centre crop to a square, then resize
            img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            img = img.resize((image_size, image_size), Image.Resampling.BICUBIC)
            pixels = np.frombuffer(img.tobytes(), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return pixels.reshape(image_size, image_size, channels).transpose(2, 0, 1).copy()  # C order, writable


def _decode_job(job):
    return _decode(*job)


DECODE_CHUNK = 2048  # images read ahead of the decoding processes: bounds the raw bytes held


def _decoded(reads, image_size, channels, log):
    """Each image decoded, in order (None where unreadable): on all cores when there are many,
    with a progress bar on a terminal."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    bar = None
    if sys.stderr.isatty() and len(reads) >= DECODE_CHUNK:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(reads), unit="image", desc="decoding", dynamic_ncols=True)
        except ImportError:
            pass
    pool = None
    if workers > 1 and len(reads) >= 256 and "fork" in multiprocessing.get_all_start_methods():
        pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        for start in range(0, len(reads), DECODE_CHUNK):
            jobs = [(read(), image_size, channels) for read in reads[start:start + DECODE_CHUNK]]
            yield from pool.map(_decode_job, jobs, chunksize=32) if pool else map(_decode_job, jobs)
            if bar is not None:
                bar.update(len(jobs))
            elif len(reads) >= 10 * DECODE_CHUNK:
                log(f"decoded {min(start + DECODE_CHUNK, len(reads))} of {len(reads)} images")
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()


def _build(entries, image_size, channels, where, numbered=None, entry=None, log=None):
    """entries: (label_name or None, read() -> bytes). numbered: the number of classes when the
    labels are class numbers already (dataset.json), which are kept as they are. entry: the
    cache entry to decode into (None: into memory)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise DataError("reading image files needs Pillow: pip install 'fastgan[train]'") from None
    if not entries:
        raise DataError(f"{where} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    out = entry.create(len(entries), channels, image_size) if entry is not None else []
    names, skipped = [], 0
    reads = [read for _, read in entries]
    for (name, _), img in zip(entries, _decoded(reads, image_size, channels, log or (lambda *_: None))):
        if img is None:
            skipped += 1
            continue
        if entry is not None:
            out[len(names)] = img
        else:
            out.append(torch.from_numpy(img))
        names.append(name)
    if not names:
        raise DataError(f"none of the {skipped} images in {where} could be read")
    if numbered:
        labels, class_names = names, [str(i) for i in range(numbered)]
    else:
        class_names = sorted({n for n in names if n is not None})
        labels = None
        if len(class_names) > 1 and all(n is not None for n in names):
            index = {n: i for i, n in enumerate(class_names)}
            labels = [index[n] for n in names]
        else:
            class_names = []
    if entry is not None:
        entry.commit(out, {"count": len(names), "labels": labels, "class_names": class_names, "skipped": skipped})
        return None
    return ImageData(torch.stack(out), None if labels is None else torch.tensor(labels, dtype=torch.long),
                     class_names, skipped)


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


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


def _labelled(names, read, dataset_json, image_size, channels, where, entry):
    """_build over the images `names` (relative, with /), labelled by dataset.json when there is
    one that gives labels, else by their first folder."""
    found = _dataset_json_labels(dataset_json, names, where) if dataset_json is not None else None
    if found is None:
        return _build([(_label_of(n), lambda n=n: read(n)) for n in names], image_size, channels, where,
                      entry=entry)
    by_name, classes = found
    return _build([(by_name[n], lambda n=n: read(n)) for n in names], image_size, channels, where, numbered=classes,
                  entry=entry)


def _from_folder(root, image_size, channels, entry=None):
    names = []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if _is_image(f):
                names.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))

    def read(name):
        with open(os.path.join(root, name), "rb") as f:
            return f.read()

    meta = os.path.join(root, "dataset.json")
    dataset_json = read("dataset.json") if os.path.isfile(meta) else None
    return _labelled(names, read, dataset_json, image_size, channels, f"data folder {root!r}", entry)


def _from_zip(path, image_size, channels, entry=None):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path!r} is not a readable .zip file") from None
    with archive:
        names = sorted(n for n in archive.namelist() if _is_image(n) and not n.endswith("/"))
        dataset_json = archive.read("dataset.json") if "dataset.json" in archive.namelist() else None
        return _labelled(names, archive.read, dataset_json, image_size, channels, f"archive {path!r}", entry)


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
