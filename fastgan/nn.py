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
    """sync_bn=True (or a process_group) synchronises the batch statistics over the ranks of
    process_group (None: the default group) in training, as nn.SyncBatchNorm does."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, eps=1e-5, momentum=0.1,
                 bias=False, device=None, dtype=None, sync_bn=False, process_group=None):
        kw = {"device": device, "dtype": dtype}
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **kw),
                         _batch_norm(out_channels, eps, momentum, sync_bn, process_group, kw), nn.ReLU(inplace=True))


class Conv2dBNLeakyReLU(FusedSequential):
    """sync_bn / process_group: as ConvTranspose2dBNReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, negative_slope=0.2, eps=1e-5,
                 momentum=0.1, bias=False, device=None, dtype=None, sync_bn=False, process_group=None):
        kw = {"device": device, "dtype": dtype}
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **kw),
                         _batch_norm(out_channels, eps, momentum, sync_bn, process_group, kw),
                         nn.LeakyReLU(negative_slope, inplace=True))


class Conv2dLeakyReLU(FusedSequential):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, negative_slope=0.2, bias=False,
                 device=None, dtype=None):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, device=device,
                                   dtype=dtype),
                         nn.LeakyReLU(negative_slope, inplace=True))


class ConvTranspose2dTanh(FusedSequential):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False, device=None,
                 dtype=None):
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias,
                                            device=device, dtype=dtype),
                         nn.Tanh())


class LinearLeakyReLU(FusedSequential):
    """nn.Sequential(Linear, LeakyReLU) as one fused call (the MLP GAN's hidden layers)."""

    def __init__(self, in_features, out_features, negative_slope=0.2, bias=True, device=None, dtype=None):
        super().__init__(nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype),
                         nn.LeakyReLU(negative_slope, inplace=True))


class LinearTanh(FusedSequential):
    """nn.Sequential(Linear, Tanh) as one fused call (the MLP generator's output layer)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__(nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype), nn.Tanh())


class BCEWithLogitsLoss(nn.Module):
    """torch.nn.BCEWithLogitsLoss on the fused kernel; the target may also be a Python float."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: Union[torch.Tensor, float]) -> torch.Tensor:
        return FF.bce_with_logits(input, target, self.reduction)


__all__ = ["convert_sync_batchnorm", "SyncBatchNorm2d", "ConvTranspose2dBNReLU", "Conv2dBNLeakyReLU", "Conv2dLeakyReLU",
           "ConvTranspose2dTanh", "LinearLeakyReLU", "LinearTanh",
           "BCEWithLogitsLoss", "FusedSequential"]
