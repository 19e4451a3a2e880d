"""rosinality/stylegan2-pytorch's `op` package API (also used by GFPGAN, pSp/e4e and others) on
fastgan's ops: upfirdn2d(input, kernel, up, down, pad)."""
from typing import Sequence, Union

import torch

from . import upfirdn2d as _fir

Tensor = torch.Tensor


def upfirdn2d(input: Tensor, kernel: Tensor, up: Union[int, Sequence[int]] = 1, down: Union[int, Sequence[int]] = 1,
              pad: Sequence[int] = (0, 0)) -> Tensor:
    """rosinality's upfirdn2d: upsample by up (insert zeros), pad by pad, convolve with kernel
    (a true convolution: the kernel is flipped), keep every down-th sample.

    Args:
        input: (N, C, H, W).
        kernel: (height, width) (or (taps,), separable), on input's device.
        up, down: an int or (x, y).
        pad: (p0, p1) for both axes, or (x0, x1, y0, y1).
    Returns:
        The filtered batch, as fastgan.stylegan.upfirdn2d (which documents the errors).
    """
    pad = list(pad)
    if len(pad) == 2:
        pad = [pad[0], pad[1], pad[0], pad[1]]
    return _fir.upfirdn2d(input, kernel, up=up, down=down, padding=pad)
