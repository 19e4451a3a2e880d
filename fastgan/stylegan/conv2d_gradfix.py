"""NVlabs' conv2d_gradfix API (torch_utils/ops/conv2d_gradfix.py) on stock convolutions.

NVlabs wrote their own autograd for convolutions because the torch of 2020 computed the weight
gradient in every backward, including the one inside an R1 or path-length penalty that only
needs the input's gradient, and could not differentiate some of those backward passes again.
Every torch fastgan supports (2.5 and later) differentiates convolutions to any order and, when
torch.autograd.grad asks for the input's gradient only, computes no weight gradient
(convolution_backward's output_mask). So these are the stock convolutions, and
no_weight_gradients() is kept for code that enters it: within it, as outside, only the gradients
asked for are computed."""
import contextlib

import torch
import torch.nn.functional as F

enabled = True  # NVlabs' switch; the stock convolutions below need none
weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True):
    """NVlabs' context for R1 and path-length penalties. The gradients computed inside it are
    the same with or without it (see the module's docstring); it records the flag for code that
    reads it."""
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> torch.Tensor:
    """torch.nn.functional.conv2d, differentiable to any order."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1) -> torch.Tensor:
    """torch.nn.functional.conv_transpose2d (NVlabs' argument order), differentiable to any order."""
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
