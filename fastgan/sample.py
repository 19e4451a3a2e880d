"""`fastgan sample`: a grid, or an interpolation strip, from a training checkpoint."""
import torch

from . import checkpoint as ckpt_io
from .images import save_grid
from .train import TrainConfig, TrainError, build_models, generate


def sample(checkpoint: str, out: str, n: int = 64, label=None, interpolate: bool = False, seed: int = 0,
           device: str = "cpu") -> None:
    try:
        state = ckpt_io.load(checkpoint)
    except ckpt_io.CheckpointError as exc:
        raise TrainError(str(exc)) from None
    known = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in known})
    cfg.channels_last = False
    classes = state.get("class_names") or []
    if label is not None and not cfg.conditional:
        raise TrainError("--class needs a checkpoint of a --conditional run")
    if label is not None and not 0 <= label < len(classes):
        raise TrainError(f"--class must lie in [0, {len(classes)}), got {label}")
    g, _ = build_models(cfg, len(classes), torch.device(device))
    weights = state["G_ema"] if state.get("G_ema") else state["G"]
    try:
        g.load_state_dict(weights)
    except RuntimeError as exc:
        raise TrainError(f"checkpoint {checkpoint!r} does not fit its own config: {str(exc).splitlines()[0]}") from None
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
    images = generate(g, z.to(device), None if labels is None else labels.to(device))
    save_grid(images, out, nrow=n if interpolate else 8)
