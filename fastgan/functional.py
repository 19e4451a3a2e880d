"""Fused functions: convolution through ATen (oneDNN / cuDNN), then one fastgan op for
everything around it. Each function runs the compiled op when fastgan._C serves the
tensor's device and the stock-PyTorch reference otherwise; both paths share the argument
checks in _checks.py."""
from typing import Optional, Union

import torch
import torch.nn.functional as F

from . import _checks, reference
from . import _ops  # noqa: F401  (registers fake kernels and autograd)
from ._backend import fused_for
from .activations import check_activation
from .sync_batch_norm import sync_batch_norm_act  # noqa: F401  (part of this module's API)

Tensor = torch.Tensor


def batch_norm_act(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
                   momentum: Optional[float] = 0.1, eps: float = 1e-5, activation: str = "relu",
                   negative_slope: float = 0.0, num_batches_tracked: Optional[Tensor] = None,
                   layer: str = "batch_norm_act") -> Tensor:
    """activation(batch_norm(input)) with nn.BatchNorm2d's semantics: batch statistics in
    training (or when there are no running stats), running statistics in eval; in training
    the running stats and num_batches_tracked are updated as BatchNorm2d updates them."""
    check_activation(activation)
    _checks.check_batch_norm(input, weight, bias, running_mean, running_var, layer)
    use_batch_stats = training or running_mean is None
    if use_batch_stats:
        _checks.check_training_batch(input, layer)
    update = training and running_mean is not None
    if fused_for(input):
        out, mean, var = torch.ops.fastgan.batch_norm_act(input, weight, bias, running_mean, running_var,
                                                          use_batch_stats, eps, activation, negative_slope)
        if update:
            if num_batches_tracked is None:
                num_batches_tracked = torch.zeros((), dtype=torch.long, device=input.device)
            count = input.size(0) * input.size(2) * input.size(3)
            torch.ops.fastgan.batch_norm_update_stats(running_mean, running_var, num_batches_tracked, mean, var,
                                                      momentum, count)
        return out
    # Stock path, written the way nn.BatchNorm2d.forward is.
    factor = 0.0 if momentum is None else momentum
    if update and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    y = F.batch_norm(input, running_mean if not use_batch_stats or update else None,
                     running_var if not use_batch_stats or update else None, weight, bias, use_batch_stats,
                     factor, eps)
    return reference.activation(y, activation, negative_slope)


def activation(input: Tensor, name: str, negative_slope: float = 0.0) -> Tensor:
    """An activation whose backward needs only its output (leaky_relu with slope >= 0, tanh, relu)."""
    check_activation(name)
    _checks.check_float_tensor(input, "input")
    if name == "leaky_relu":
        _checks.check_negative_slope(negative_slope, "activation")
    if fused_for(input):
        return torch.ops.fastgan.activation(input, name, negative_slope)
    return reference.activation(input, name, negative_slope)


def _conv(input, weight, bias, stride, padding, dilation, groups, output_padding, transposed, layer):
    _checks.check_conv(input, weight, transposed=transposed, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, layer=layer)
    if transposed:
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d_bn_relu(input, weight, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked=None,
                             *, stride=1, padding=0, output_padding=0, groups=1, dilation=1, conv_bias=None,
                             training=False, momentum=0.1, eps=1e-5):
    """relu(batch_norm(conv_transpose2d(input, weight))) : a DCGAN Generator hidden layer."""
    layer = "ConvTranspose2dBNReLU"
    y = _conv(input, weight, conv_bias, stride, padding, dilation, groups, output_padding, True, layer)
    return batch_norm_act(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps, "relu", 0.0,
                          num_batches_tracked, layer)


def conv2d_bn_leaky_relu(input, weight, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked=None,
                         *, stride=1, padding=0, groups=1, dilation=1, conv_bias=None, training=False,
                         momentum=0.1, eps=1e-5, negative_slope=0.2):
    """leaky_relu(batch_norm(conv2d(input, weight))) : a DCGAN Discriminator hidden layer."""
    layer = "Conv2dBNLeakyReLU"
    y = _conv(input, weight, conv_bias, stride, padding, dilation, groups, 0, False, layer)
    return batch_norm_act(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps, "leaky_relu",
                          negative_slope, num_batches_tracked, layer)


def conv2d_leaky_relu(input, weight, bias=None, *, stride=1, padding=0, groups=1, dilation=1,
                      negative_slope=0.2):
    """leaky_relu(conv2d(input, weight, bias)) : the Discriminator's first layer."""
    layer = "Conv2dLeakyReLU"
    _checks.check_negative_slope(negative_slope, layer)
    y = _conv(input, weight, bias, stride, padding, dilation, groups, 0, False, layer)
    return activation(y, "leaky_relu", negative_slope)


def conv_transpose2d_tanh(input, weight, bias=None, *, stride=1, padding=0, output_padding=0, groups=1,
                          dilation=1):
    """tanh(conv_transpose2d(input, weight, bias)) : the Generator's last layer."""
    y = _conv(input, weight, bias, stride, padding, dilation, groups, output_padding, True, "ConvTranspose2dTanh")
    return activation(y, "tanh")


def bce_with_logits(input: Tensor, target: Union[Tensor, float], reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits, loss and gradient in one pass. target is a tensor of
    input's shape or a Python float (1.0, 0.0, 0.9 for label smoothing: no tensor is made)."""
    _checks.check_bce(input, target, reduction)
    if torch.is_autocast_enabled(input.device.type):
        input = input.float()  # as torch's own loss does under autocast
    if not fused_for(input):
        return reference.bce_with_logits(input, target, reduction)
    is_tensor = isinstance(target, torch.Tensor)
    target_tensor = target.to(input.dtype) if is_tensor else None
    target_value = 0.0 if is_tensor else float(target)
    loss, _ = torch.ops.fastgan.bce_with_logits(input, target_tensor, target_value, _checks.REDUCTIONS[reduction])
    return loss
