"""The decoded-image cache: the first run over a folder or .zip of images decodes it once into a
uint8 .npy file (N, C, S, S) plus a .json of its labels, and every later run memory-maps that
file, so a restart starts in seconds and resident memory holds only the pages the batches touch.

A cache entry is named by a hash of what its bytes depend on: the source's absolute path, the
size and modification time of every file in it, the image size and channels, and this format.
A changed source gets a new name and is decoded again. The .npy is written under a temporary
name and renamed last, after the .json, so an interrupted decode leaves nothing a later run
trusts. One process decodes while others that need the same entry (torchrun's ranks) wait for
it: the first to create the entry's .lock file decodes, and a lock whose process has died on
this machine is taken over."""
import hashlib
import json
import os
import socket
import time
from typing import Optional

import numpy as np

FORMAT = "fastgan-image-cache-1"
ENV = "FASTGAN_DATA_CACHE"


def default_folder() -> str:
    """$FASTGAN_DATA_CACHE, else $XDG_CACHE_HOME/fastgan/data, else ~/.cache/fastgan/data."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastgan", "data")


def key(source: str, image_size: int, channels: int, wanted=lambda name: True) -> str:
    """The entry's name: a hash of the source's files (path, size, modification time), the image
    size, the channels and the format. `wanted` picks the files of a folder that count."""
    h = hashlib.sha256(f"{FORMAT}\0{os.path.abspath(source)}\0{image_size}\0{channels}".encode())
    if os.path.isfile(source):
        st = os.stat(source)
        h.update(f"\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        for dirpath, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                if wanted(name):
                    st = os.stat(path)
                    h.update(f"\0{os.path.relpath(path, source)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


class CacheWriteError(Exception):
    """The cache folder cannot be written (permissions, a full disk)."""


class Entry:
    """One cache entry: <folder>/<key>.npy, .json and (while it is being written) .lock."""

    def __init__(self, folder: str, name: str):
        self.folder = folder
        self.npy, self.meta, self.lock = (os.path.join(folder, name + ext) for ext in (".npy", ".json", ".lock"))

    def ready(self) -> bool:
        return os.path.isfile(self.npy) and os.path.isfile(self.meta)

    def read(self):
        """(images: a copy-on-write memory map of the valid rows, meta dict)."""
        with open(self.meta) as f:
            meta = json.load(f)
        images = np.load(self.npy, mmap_mode="c")  # "c": writable for torch, never written back
        return images[:meta["count"]], meta

    def acquire(self, poll_s: float = 0.5) -> bool:
        """True when this process should write the entry; False once another has written it."""
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise CacheWriteError(str(exc)) from None
        while not self.ready():
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._holder_is_gone():
                    _remove(self.lock)
                else:
                    time.sleep(poll_s)
                continue
            except OSError as exc:
                raise CacheWriteError(str(exc)) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}")
            if self.ready():  # written between our check and our lock
                self.release()
                return False
            return True
        return False

    def release(self):
        _remove(self.lock)

    def _holder_is_gone(self) -> bool:
        try:
            with open(self.lock) as f:
                host, pid = f.read().split()
        except (OSError, ValueError):
            return False  # being written this instant: look again
        if host != socket.gethostname():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False

    def create(self, count_max: int, channels: int, image_size: int):
        """A writable memory map for up to count_max images, under a temporary name."""
        self.tmp = os.path.join(self.folder, f".{os.path.basename(self.npy)}.{os.getpid()}.tmp")
        try:
            return np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8,
                                             shape=(count_max, channels, image_size, image_size))
        except OSError as exc:
            raise CacheWriteError(str(exc)) from None

    def commit(self, images, meta: dict):
        """Flushes the images, writes the .json, then renames the .npy into place: the entry
        exists only once both are whole."""
        try:
            images.flush()
            del images
            tmp_meta = self.tmp + ".json"
            with open(tmp_meta, "w") as f:
                json.dump({"format": FORMAT, **meta}, f)
            os.replace(tmp_meta, self.meta)
            os.replace(self.tmp, self.npy)
        except OSError as exc:
            raise CacheWriteError(str(exc)) from None

    def abandon(self):
        for path in (getattr(self, "tmp", None), getattr(self, "tmp", "") + ".json"):
            if path:
                _remove(path)


def _remove(path: Optional[str]):
    try:
        os.unlink(path)
    except (FileNotFoundError, TypeError):
        pass
