"""Drop-in fused layers. Each is an nn.Sequential of the stock layers it replaces, so its
state_dict has the same keys (0.weight, 1.running_mean, ...) as
nn.Sequential(ConvTranspose2d, BatchNorm2d, ReLU) and checkpoints move freely between them."""
from typing import Union

import torch
from torch import nn

from . import functional as FF
from .fuse import FusedSequential
from .sync_batch_norm import SyncBatchNorm2d, convert_sync_batchnorm


def _batch_norm(channels, eps, momentum, sync_bn, process_group, kw):
    # SyncBatchNorm2d has BatchNorm2d's parameters and buffers, so the state_dict is the same.
    if sync_bn or process_group is not None:
        return SyncBatchNorm2d(channels, eps=eps, momentum=momentum, process_group=process_group, **kw)
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum, **kw)


class ConvTranspose2dBNReLU(FusedSequential):
    """nn.Sequential(ConvTranspose2d, BatchNorm2d, ReLU) as one fused call (DCGAN's generator
    blocks); the state_dict is that Sequential's.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias, device, dtype: as
            nn.ConvTranspose2d's (bias off by default: the BatchNorm's shift makes it redundant).
        eps, momentum: as nn.BatchNorm2d's.
        sync_bn: True (or a process_group) synchronises the batch statistics over the ranks of
            process_group (None: the default group) in training, as nn.SyncBatchNorm does.
        process_group: the group to synchronise over, or None.
    Input (N, in_channels, H, W) of a floating dtype; output (N, out_channels, H', W'). Bad input
    raises the errors the stock layers' checks describe (docs/backends.md)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-5, momentum=0.1,
                 bias=False, device=None, dtype=None, sync_bn=False, process_group=None):
        kw = {"device": device, "dtype": dtype}
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **kw),
                         _batch_norm(out_channels, eps, momentum, sync_bn, process_group, kw), nn.ReLU(inplace=True))


class Conv2dBNLeakyReLU(FusedSequential):
    """nn.Sequential(Conv2d, BatchNorm2d, LeakyReLU) as one fused call (DCGAN's discriminator
    blocks); the state_dict is that Sequential's.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias, device, dtype: as
            nn.Conv2d's (bias off by default).
        negative_slope: the LeakyReLU's slope, >= 0 (the backward reads the sign from the output).
        eps, momentum, sync_bn, process_group: as ConvTranspose2dBNReLU's."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, negative_slope=0.2, eps=1e-5,
                 momentum=0.1, bias=False, device=None, dtype=None, sync_bn=False, process_group=None):
        kw = {"device": device, "dtype": dtype}
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **kw),
                         _batch_norm(out_channels, eps, momentum, sync_bn, process_group, kw),
                         nn.LeakyReLU(negative_slope, inplace=True))


class Conv2dLeakyReLU(FusedSequential):
    """nn.Sequential(Conv2d, LeakyReLU) as one fused call (DCGAN's first discriminator block).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias, device, dtype: as
            nn.Conv2d's (bias off by default).
        negative_slope: the LeakyReLU's slope, >= 0."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, negative_slope=0.2, bias=False,
                 device=None, dtype=None):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, device=device,
                                   dtype=dtype),
                         nn.LeakyReLU(negative_slope, inplace=True))


class ConvTranspose2dTanh(FusedSequential):
    """nn.Sequential(ConvTranspose2d, Tanh) as one fused call (DCGAN's image output).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias, device, dtype: as
            nn.ConvTranspose2d's (bias off by default)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False, device=None,
                 dtype=None):
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias,
                                            device=device, dtype=dtype),
                         nn.Tanh())


class LinearLeakyReLU(FusedSequential):
    """nn.Sequential(Linear, LeakyReLU) as one fused call (the MLP GAN's hidden layers).

    Args:
        in_features, out_features, bias, device, dtype: as nn.Linear's.
        negative_slope: the LeakyReLU's slope, >= 0."""

    def __init__(self, in_features, out_features, negative_slope=0.2, bias=True, device=None, dtype=None):
        super().__init__(nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype),
                         nn.LeakyReLU(negative_slope, inplace=True))


class LinearTanh(FusedSequential):
    """nn.Sequential(Linear, Tanh) as one fused call (the MLP generator's output layer).

    Args:
        in_features, out_features, bias, device, dtype: as nn.Linear's."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__(nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype), nn.Tanh())


class BCEWithLogitsLoss(nn.Module):
    """torch.nn.BCEWithLogitsLoss on the fused kernel; the target may also be a Python float.

    Args:
        reduction: 'mean', 'sum' or 'none', as torch's.
    forward(input, target): logits of any floating shape, and a target tensor of input's shape
    or a float; returns the loss (0-D unless reduction='none'). Errors: fastgan.functional's
    bce_with_logits."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: Union[torch.Tensor, float]) -> torch.Tensor:
        return FF.bce_with_logits(input, target, self.reduction)


__all__ = ["convert_sync_batchnorm", "SyncBatchNorm2d", "ConvTranspose2dBNReLU", "Conv2dBNLeakyReLU", "Conv2dLeakyReLU",
           "ConvTranspose2dTanh", "LinearLeakyReLU", "LinearTanh",
           "BCEWithLogitsLoss", "FusedSequential"]
