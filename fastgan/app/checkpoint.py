"""Checkpoints written atomically (temp file, fsync, rename: a kill at any moment leaves the
previous checkpoint intact) and read with weights_only=True (loading never runs pickled code)."""
import os
import tempfile

import torch

FORMAT = "fastgan-checkpoint-1"


class CheckpointError(ValueError):
    pass


def write_atomic(path: str, write) -> None:
    """write(f) into a temporary file beside path, synced, then renamed over path: a kill at any
    moment leaves either the old file or the new one, never a part of it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_atomic(obj, path: str) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def _first_line(exc: BaseException) -> str:
    """The exception's message, or its type when it has none (EOFError from a truncated file)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__


def load(path: str) -> dict:
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a folder; give the checkpoint file (e.g. {path}/checkpoint.pt)")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if not magic:
            raise CheckpointError(f"checkpoint {path!r} is empty (0 bytes): it was never written completely")
        # torch.save writes a zip archive (a bare pickle before torch 1.6); anything else is some
        # other file, whatever error torch.load would stumble into.
        if magic != b"PK\x03\x04" and magic[:1] != b"\x80":
            raise CheckpointError(f"checkpoint {path!r} is not a file written by torch.save (it starts with "
                                  f"{magic!r}, not a zip archive or a pickle)")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path!r} cannot be read ({_first_line(exc)})") from None
    except Exception as exc:  # truncated, corrupt, or not a torch file at all
        raise CheckpointError(f"checkpoint {path!r} is corrupt or not a fastgan checkpoint "
                              f"({_first_line(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path!r} is not a fastgan checkpoint (expected format {FORMAT})")
    return ckpt
