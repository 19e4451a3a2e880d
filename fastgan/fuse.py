"""Running stock layer sequences through the fused ops without changing the modules.

FusedSequential is an nn.Sequential that keeps its children (so state_dict keys and values
are exactly those of the stock model) and, at forward, runs each recognised run of children
as one fused call:
    Conv2d | ConvTranspose2d  ->  BatchNorm2d | SyncBatchNorm  ->  ReLU | LeakyReLU | Tanh
    Conv2d | ConvTranspose2d  ->  ReLU | LeakyReLU (slope >= 0) | Tanh
A SyncBatchNorm2d (fastgan.nn.convert_sync_batchnorm) or torch's nn.SyncBatchNorm
synchronises its statistics over its process group through the fused kernels whenever
torch's own would (training, more than one rank); otherwise it is an ordinary BatchNorm2d.
Everything else runs as the stock module it is."""
import copy

from torch import nn

from . import functional as FF
from .sync_batch_norm import SYNC_BATCH_NORMS, needs_sync, sync_batch_norm_act

_BATCH_NORMS = (nn.BatchNorm2d, *SYNC_BATCH_NORMS)

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _activation_of(module):
    """(name, negative_slope) for a fusable activation module, else None."""
    if type(module) is nn.ReLU:
        return "relu", 0.0
    if type(module) is nn.LeakyReLU:
        return "leaky_relu", float(module.negative_slope)
    if type(module) is nn.Tanh:
        return "tanh", 0.0
    return None


def _fusable_conv(module):
    return type(module) in _CONVS and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def plan(modules):
    """Split a list of modules into segments: (length, kind, activation, slope)."""
    segments, i = [], 0
    while i < len(modules):
        m = modules[i]
        if _fusable_conv(m) and i + 2 < len(modules) and type(modules[i + 1]) in _BATCH_NORMS \
                and _activation_of(modules[i + 2]) is not None:
            name, slope = _activation_of(modules[i + 2])
            segments.append((3, "conv_bn_act", name, slope))
            i += 3
            continue
        if _fusable_conv(m) and i + 1 < len(modules) and _activation_of(modules[i + 1]) is not None:
            name, slope = _activation_of(modules[i + 1])
            if not (name == "leaky_relu" and slope < 0):  # the backward reads the sign from the output
                segments.append((2, "conv_act", name, slope))
                i += 2
                continue
        segments.append((1, "module", None, 0.0))
        i += 1
    return segments


def _conv(conv, x, layer):
    transposed = isinstance(conv, nn.ConvTranspose2d)
    output_padding = conv.output_padding if transposed else 0
    return FF._conv(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups,
                    output_padding, transposed, layer)


def conv_bn_act(conv, bn, activation, slope, x):
    layer = f"{type(conv).__name__}+{type(bn).__name__}"
    y = _conv(conv, x, layer)
    if type(bn) in SYNC_BATCH_NORMS and needs_sync(bn):
        return sync_batch_norm_act(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.momentum, bn.eps,
                                   activation, slope, bn.num_batches_tracked, bn.process_group, layer)
    return FF.batch_norm_act(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training,
                             bn.momentum, bn.eps, activation, slope, bn.num_batches_tracked, layer)


def conv_act(conv, activation, slope, x):
    return FF.activation(_conv(conv, x, type(conv).__name__), activation, slope)


class FusedSequential(nn.Sequential):
    """nn.Sequential whose conv/BatchNorm/activation runs execute as fused ops."""

    def forward(self, input):
        modules = list(self._modules.values())
        i = 0
        for length, kind, activation, slope in plan(modules):
            if kind == "conv_bn_act":
                input = conv_bn_act(modules[i], modules[i + 1], activation, slope, input)
            elif kind == "conv_act":
                input = conv_act(modules[i], activation, slope, input)
            else:
                input = modules[i](input)
            i += length
        return input


def fuse(module: nn.Module, inplace: bool = False) -> nn.Module:
    """A module computing the same function with fused ops: every plain nn.Sequential that
    holds a fusable run becomes a FusedSequential with the very same children, so
    state_dict keys and values do not change. The input is copied unless inplace=True."""
    if not inplace:
        module = copy.deepcopy(module)
    for m in [module, *module.modules()]:
        if type(m) is nn.Sequential and any(kind != "module" for _, kind, _, _ in plan(list(m._modules.values()))):
            m.__class__ = FusedSequential
    return module


def unfuse(module: nn.Module, inplace: bool = False) -> nn.Module:
    """The inverse of fuse(): every FusedSequential becomes a plain nn.Sequential again."""
    if not inplace:
        module = copy.deepcopy(module)
    for m in [module, *module.modules()]:
        if isinstance(m, FusedSequential):
            m.__class__ = nn.Sequential
    return module
