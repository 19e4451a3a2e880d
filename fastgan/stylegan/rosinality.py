"""rosinality/stylegan2-pytorch's `op` package API (also used by GFPGAN, pSp/e4e and others) on
fastgan's ops: fused_leaky_relu, FusedLeakyReLU, upfirdn2d."""
from typing import Optional, Sequence, Union

import torch
from torch import nn

from . import upfirdn2d as _fir
from .bias_act import bias_act

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


def fused_leaky_relu(input: Tensor, bias: Optional[Tensor] = None, negative_slope: float = 0.2,
                     scale: float = 2 ** 0.5) -> Tensor:
    """leaky_relu(input + bias, negative_slope) * scale, bias along dim 1, in one pass.

    Args:
        input: (N, C, ...), a floating-point tensor.
        bias: None or (C,); cast to input's dtype.
        negative_slope, scale: the leaky ReLU's slope and the gain after it.
    Returns:
        A tensor like input. Errors as fastgan.stylegan.bias_act.bias_act.
    """
    if bias is not None and isinstance(input, Tensor):
        bias = bias.to(input.dtype)
    return bias_act(input, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale)


class FusedLeakyReLU(nn.Module):
    """rosinality's FusedLeakyReLU: a per-channel bias (zeros at first), then fused_leaky_relu."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input: Tensor) -> Tensor:
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)
