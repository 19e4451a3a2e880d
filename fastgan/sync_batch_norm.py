"""Synchronised fused BatchNorm + activation: batch statistics over every rank of a process
group, as nn.SyncBatchNorm computes them, through the fused kernels.

Forward: each rank's statistics (batch_norm_stats) -> one all_reduce of the per-channel
sum, sum of squares and count -> normalise + affine + activate with the global statistics
in one pass (batch_norm_act given those statistics). Backward: the two per-channel sums
sum(g) and sum(g * (x - mean)) (batch_norm_act_backward_reduce) -> one all_reduce -> the
elementwise grad_input (batch_norm_act_backward_elemt). grad_weight and grad_bias stay
per rank, as nn.SyncBatchNorm leaves them: DistributedDataParallel averages them.

The running statistics are updated with torch ops on the device so the global count never
has to travel to the host (no synchronisation per layer).

SyncBatchNorm2d is the module: a BatchNorm2d (same parameters, buffers and state_dict) that
synchronises in training. fastgan has its own because DistributedDataParallel refuses
torch's nn.SyncBatchNorm in a CPU module; fused layers accept either."""
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

from . import _checks, reference
from ._backend import fused_for
from ._fake import empty_like_layout, fake, stats_like
from .activations import check_activation

# The variance comes from sum(x^2)/n - mean^2, which cancels: float64 keeps about
# 16 - log10(mean^2 / var) digits (10 for activations of mean 1e3 and variance 1).
_REDUCE_DTYPE = torch.float64


def needs_sync(bn: nn.Module) -> bool:
    """Whether this synchronised BatchNorm synchronises now: training, with an initialised process
    group of more than one rank; otherwise it is an ordinary BatchNorm2d, as in torch."""
    if not (bn.training and dist.is_available() and dist.is_initialized()):
        return False
    return dist.get_world_size(bn.process_group or dist.group.WORLD) > 1


def _stats(input, fused):
    if fused:
        return torch.ops.fastgan.batch_norm_stats(input)
    return reference.batch_norm_stats(input)


@fake("batch_norm_stats")
def _batch_norm_stats_fake(input):
    return stats_like(input)


@fake("batch_norm_act_backward_reduce")
def _batch_norm_act_backward_reduce_fake(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope):
    return stats_like(input)


@fake("batch_norm_act_backward_elemt")
def _batch_norm_act_backward_elemt_fake(grad_out, input, weight, bias, mean, var, mean_dy, mean_dy_xmu, eps, activation,
                                        negative_slope):
    return empty_like_layout(input)


def _all_reduce(t, group):
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def _update_running_stats(running_mean, running_var, num_batches_tracked, mean, var, total, momentum):
    # nn.BatchNorm2d's update with the unbiased global variance; the cumulative average
    # (momentum=None) divides by num_batches_tracked on the device.
    if num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    # A Python float for momentum: a tensor made from it would be a host-to-device copy per layer.
    factor = 1.0 / num_batches_tracked.to(_REDUCE_DTYPE) if momentum is None else float(momentum)
    unbiased = var * total / (total - 1).clamp_min(1)
    running_mean.copy_(running_mean.to(_REDUCE_DTYPE).lerp(mean, factor))
    running_var.copy_(running_var.to(_REDUCE_DTYPE).lerp(unbiased, factor))


class _SyncBatchNormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, num_batches_tracked, momentum, eps, activation,
                negative_slope, group):
        fused = fused_for(input)
        channels = input.size(1)
        mean, var = _stats(input, fused)
        count = input.numel() // channels
        mean64, var64 = mean.to(_REDUCE_DTYPE), var.to(_REDUCE_DTYPE)
        packed = torch.cat([mean64 * count, (var64 + mean64 * mean64) * count,
                            mean64.new_full((1,), float(count))])
        _all_reduce(packed, group)
        total = packed[-1:]
        global_mean = packed[:channels] / total
        global_var = (packed[channels:2 * channels] / total - global_mean * global_mean).clamp_min(0)
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, num_batches_tracked, global_mean, global_var, total,
                                  momentum)
        mean, var = global_mean.to(mean.dtype), global_var.to(var.dtype)
        if fused:
            out = torch.ops.fastgan.batch_norm_act(input, weight, bias, mean, var, None, False, None, eps,
                                                   activation, negative_slope)[0]
        else:
            out = reference.normalize_act(input, weight, bias, mean, var, False, eps, activation, negative_slope)
        ctx.save_for_backward(input, weight, bias, mean, var, total)
        ctx.config = (eps, activation, negative_slope, group, fused)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight, bias, mean, var, total = ctx.saved_tensors
        eps, activation, slope, group, fused = ctx.config
        ops = torch.ops.fastgan if fused else reference
        sum_dy, sum_dy_xmu = ops.batch_norm_act_backward_reduce(grad_out, input, weight, bias, mean, var, eps,
                                                                activation, slope)
        grad_weight = grad_bias = grad_input = None
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = (sum_dy_xmu * torch.rsqrt(var + eps)).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = sum_dy.to(bias.dtype)
        if ctx.needs_input_grad[0]:
            channels = input.size(1)
            packed = _all_reduce(torch.cat([sum_dy, sum_dy_xmu]).to(_REDUCE_DTYPE), group) / total
            mean_dy, mean_dy_xmu = packed[:channels].to(mean.dtype), packed[channels:].to(mean.dtype)
            grad_input = ops.batch_norm_act_backward_elemt(grad_out, input, weight, bias, mean, var, mean_dy,
                                                           mean_dy_xmu, eps, activation, slope)
        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None, None, None


def sync_batch_norm_act(input, running_mean, running_var, weight=None, bias=None, momentum: Optional[float] = 0.1,
                        eps: float = 1e-5, activation: str = "relu", negative_slope: float = 0.0,
                        num_batches_tracked=None, process_group=None, layer: str = "sync_batch_norm_act"):
    """batch_norm_act in training mode with the statistics of every rank of process_group
    (None: the default group), as nn.SyncBatchNorm computes them; the running statistics
    are updated with the global ones. Every rank of the group must call it.

    Args:
        input: (N, C, H, W) floating-point tensor on this rank's device.
        running_mean, running_var: (C,) running statistics updated in place, or None (both or
            neither).
        weight, bias: (C,) affine parameters, or None.
        momentum: the running statistics' momentum; None for the cumulative average (with
            num_batches_tracked).
        eps, activation, negative_slope, num_batches_tracked: as functional.batch_norm_act.
        process_group: the ranks whose statistics are combined; None for all.
        layer: the name error messages give the layer.

    Returns:
        A tensor of input's shape, dtype and memory format.

    Raises:
        ValueError: an unknown activation, per-channel tensors that are not (C,), only one of the
            running statistics. RuntimeError: torch.distributed not initialised, or a tensor on
            another device. TypeError: tensors that are not floating point."""
    check_activation(activation)
    _checks.check_batch_norm(input, weight, bias, running_mean, running_var, layer)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"fastgan: {layer}: give both running_mean and running_var, or neither")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"fastgan: {layer}: synchronised BatchNorm needs torch.distributed.init_process_group() "
                           "first (or launch with torchrun)")
    group = process_group or dist.group.WORLD
    return _SyncBatchNormAct.apply(input, weight, bias, running_mean, running_var, num_batches_tracked, momentum, eps,
                                   activation, negative_slope, group)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics span every rank of process_group (None: the
    default group), on CPU (gloo) and GPU (NCCL) alike. Outside training, or with one rank,
    it is an ordinary BatchNorm2d. Same parameters, buffers and state_dict keys."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input):
        if not needs_sync(self):
            return super().forward(input)
        return sync_batch_norm_act(input, self.running_mean, self.running_var, self.weight, self.bias, self.momentum,
                                   self.eps, "identity", 0.0, self.num_batches_tracked, self.process_group,
                                   "SyncBatchNorm2d")


SYNC_BATCH_NORMS = (SyncBatchNorm2d, nn.SyncBatchNorm)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Every BatchNorm2d in module becomes a SyncBatchNorm2d over process_group (None: the
    default group) with the same parameters and buffers, so state_dict keys and values do
    not change; returns the module (a new one when module itself is a BatchNorm2d). Inside
    fastgan's fused layers and models, and fastgan.fuse()d models, the synchronised
    statistics run through the fused kernels."""
    if type(module) is nn.BatchNorm2d:
        like = next(iter(module.state_dict().values()), None)  # weight or running_mean: device and dtype
        kw = {"device": like.device, "dtype": like.dtype} if like is not None and like.is_floating_point() else {}
        sync = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, process_group, **kw)
        sync.load_state_dict(module.state_dict())
        for p, q in zip(sync.parameters(), module.parameters()):
            p.requires_grad_(q.requires_grad)
        return sync.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
