"""Image grids as PNG files (Pillow), without torchvision."""
import os

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8 in [0, 255]."""
    return x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """(N, C, H, W) uint8 -> one (H', W', C) uint8 image, nrow images per row."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    canvas = torch.zeros(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return canvas.permute(1, 2, 0).contiguous()


def save_grid(images: torch.Tensor, path: str, nrow: int = 8) -> None:
    from PIL import Image

    g = grid(to_uint8(images), nrow)
    mode = "L" if g.size(2) == 1 else "RGB"
    img = Image.fromarray(g.squeeze(2).numpy() if mode == "L" else g.numpy(), mode=mode)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
