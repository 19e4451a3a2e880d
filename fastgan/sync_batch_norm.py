"""Synchronised fused BatchNorm + activation: batch statistics over every rank of a process
group, as nn.SyncBatchNorm computes them, through the fused kernels.

Forward: each rank's statistics (batch_norm_stats) -> one all_reduce of the per-channel
sum, sum of squares and count -> normalise + affine + activate with the global statistics
in one pass (batch_norm_act given those statistics). Backward: the two per-channel sums
sum(g) and sum(g * (x - mean)) (batch_norm_act_backward_reduce) -> one all_reduce -> the
elementwise grad_input (batch_norm_act_backward_elemt). grad_weight and grad_bias stay
per rank, as nn.SyncBatchNorm leaves them: DistributedDataParallel averages them.

The running statistics are updated with torch ops on the device so the global count never
has to travel to the host (no synchronisation per layer)."""
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

from . import reference
from ._backend import fused_for

_REDUCE_DTYPE = torch.float64  # sums of squares over many ranks: cancellation stays below 1e-12


def needs_sync(bn: nn.Module) -> bool:
    """Whether this SyncBatchNorm synchronises now: training, with an initialised process
    group of more than one rank; otherwise it is an ordinary BatchNorm2d, as in torch."""
    if not (bn.training and dist.is_available() and dist.is_initialized()):
        return False
    return dist.get_world_size(bn.process_group or dist.group.WORLD) > 1


def _stats(input, fused):
    if fused:
        return torch.ops.fastgan.batch_norm_stats(input)
    return reference.batch_norm_stats(input)


def _all_reduce(t, group):
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def _update_running_stats(running_mean, running_var, num_batches_tracked, mean, var, total, momentum):
    # nn.BatchNorm2d's update with the unbiased global variance; the cumulative average
    # (momentum=None) divides by num_batches_tracked on the device.
    if num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    if momentum is None:
        factor = 1.0 / num_batches_tracked.to(_REDUCE_DTYPE)
    else:
        factor = torch.tensor(momentum, dtype=_REDUCE_DTYPE, device=mean.device)
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
            out = torch.ops.fastgan.batch_norm_act(input, weight, bias, mean, var, False, eps, activation,
                                                   negative_slope)[0]
        else:
            out = reference.batch_norm_act(input, weight, bias, mean, var, False, eps, activation, negative_slope)
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


def sync_batch_norm_act(input, running_mean, running_var, weight, bias, num_batches_tracked, momentum: Optional[float],
                        eps: float, activation: str, negative_slope: float, process_group=None):
    """Training-mode BatchNorm over all ranks of process_group (None: the default group),
    then the activation. Every rank must call it, with inputs of the same channel count."""
    group = process_group or dist.group.WORLD
    return _SyncBatchNormAct.apply(input, weight, bias, running_mean, running_var, num_batches_tracked, momentum, eps,
                                   activation, negative_slope, group)
