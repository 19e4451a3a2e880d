"""`fastgan sample`: a grid, or an interpolation strip, from a training checkpoint."""
import os

import torch

from . import checkpoint as ckpt_io
from .images import save_grid
from .config import TrainConfig, TrainError
from .model_factory import build_models, generate


MAX_IMAGES = 4096


def check_image_path(out: str, option: str = "--out") -> None:
    """A PNG file that can be written: its folder exists, and it is not a folder itself."""
    if not out.lower().endswith(".png"):
        raise TrainError(f"argument {option}: the sample grid is written as PNG, so the file name must end in .png, "
                         f"got {out!r}")
    if os.path.isdir(out):
        raise TrainError(f"argument {option}: {out!r} is a folder; give the PNG file to write")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise TrainError(f"argument {option}: the folder {folder!r} does not exist; create it first")


def sample(checkpoint: str, out: str, n: int = 64, label=None, interpolate: bool = False, seed: int = 0,
           device: str = "cpu", running_stats: bool = False) -> None:
    """Writes n images from the checkpoint's G (its EMA when the run kept one). G normalises with
    the statistics of these n images, as the grids written during training do, or with its
    running statistics (running_stats=True), which makes every image independent of the others."""
    if not 1 <= n <= MAX_IMAGES:
        raise TrainError(f"argument --n: must be >= 1 and <= {MAX_IMAGES}, got {n}")
    if not 0 <= seed < 2**63:
        raise TrainError(f"argument --seed: must be >= 0 and < 2**63, got {seed}")
    check_image_path(out)
    g, cfg, classes = load_generator(checkpoint, device)
    if label is not None and not cfg.conditional:
        raise TrainError("--class needs a checkpoint of a --conditional run")
    if label is not None and not 0 <= label < len(classes):
        raise TrainError(f"--class must lie in [0, {len(classes)}), got {label}")
    gen = torch.Generator().manual_seed(seed)
    if interpolate:
        ends = torch.randn(2, cfg.nz, generator=gen)
        t = torch.linspace(0, 1, n)[:, None]
        z = torch.lerp(ends[0].expand(n, -1), ends[1].expand(n, -1), t)
    else:
        z = torch.randn(n, cfg.nz, generator=gen)
    labels = None
    if cfg.conditional:
        labels = torch.full((n,), label, dtype=torch.long) if label is not None else torch.arange(n) % len(classes)
    if running_stats:
        with torch.no_grad():
            g.eval()
            images = (g(z.to(device), labels.to(device)) if labels is not None else g(z.to(device))).float()
    else:
        images = generate(g, z.to(device), None if labels is None else labels.to(device))
    save_grid(images, out, nrow=n if interpolate else 8)


def load_generator(checkpoint: str, device: str = "cpu"):
    """(G, its TrainConfig, class names) from a checkpoint: the EMA weights when the run kept them."""
    try:
        state = ckpt_io.load(checkpoint)
    except ckpt_io.CheckpointError as exc:
        raise TrainError(str(exc)) from None
    known = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in known})
    cfg.channels_last = False
    classes = state.get("class_names") or []
    g, _ = build_models(cfg, len(classes), torch.device(device))
    weights = state["G_ema"] if state.get("G_ema") else state["G"]
    try:
        g.load_state_dict(weights)
    except RuntimeError as exc:
        raise TrainError(f"checkpoint {checkpoint!r} does not fit its own config: {str(exc).splitlines()[0]}") from None
    return g, cfg, classes
