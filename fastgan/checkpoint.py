"""Checkpoints written atomically (temp file, fsync, rename: a kill at any moment leaves the
previous checkpoint intact) and read with weights_only=True (loading never runs pickled code)."""
import os
import tempfile

import torch

FORMAT = "fastgan-checkpoint-1"


class CheckpointError(ValueError):
    pass


def save_atomic(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a torch file at all
        raise CheckpointError(f"checkpoint {path!r} is corrupt or not a fastgan checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path!r} is not a fastgan checkpoint (expected format {FORMAT})")
    return ckpt
