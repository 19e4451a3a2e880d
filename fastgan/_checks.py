"""Argument checks of the reference path. The fused path runs the same checks in C++
(csrc/checks.h) with the same exception types and the same words, so switching backends
never changes what bad input does; tests/test_bad_input.py compares the two message for
message. Keep the two in step."""
import torch

from . import logit_losses, reference
from .activations import module_name

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def conv_module(transposed):
    return "ConvTranspose2d" if transposed else "Conv2d"


def layer_name(*modules, activation):
    """The stock modules a fused layer stands for, e.g. layer_name("ConvTranspose2d",
    "BatchNorm2d", activation="relu") is "ConvTranspose2d+BatchNorm2d+ReLU"."""
    return "+".join(p for p in [*modules, module_name(activation)] if p)


def _shape(t):
    return tuple(t.shape)


def check_float_tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastgan: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"fastgan: {name} must be a floating-point tensor (float32, float64, float16 or bfloat16), "
                        f"got {t.dtype}")


def check_4d(t, name, layer):
    check_float_tensor(t, name)
    if t.dim() != 4:
        raise ValueError(f"fastgan: {layer} expects a 4-D {name} (N, C, H, W), got a {t.dim()}-D tensor of "
                         f"shape {_shape(t)}")


def pair(v):
    """A convolution's int-or-sequence argument as two values, as nn.Conv2d reads it."""
    return (v, v) if isinstance(v, int) else tuple(v) * (2 if len(tuple(v)) == 1 else 1)


def _check_input_matches_weight(x, weight, layer):
    """One device and one dtype for a layer's input and weight. Under autocast the layer casts
    both (the fused layer's autocast kernel does the same), so the dtypes may differ then."""
    if x.device != weight.device:
        raise RuntimeError(f"fastgan: {layer}: input is on {x.device} but weight is on {weight.device}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"fastgan: {layer}: input dtype {x.dtype} does not match weight dtype {weight.dtype}; "
                        f"convert one of them (e.g. model.to({x.dtype}) or input.to({weight.dtype}))")


def check_conv(x, weight, *, transposed, padding, dilation, groups, layer):
    check_4d(x, "input", layer)
    check_float_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"fastgan: {layer} expects a 4-D weight, got shape {_shape(weight)}")
    expected = weight.size(0) if transposed else weight.size(1) * groups
    if x.size(1) != expected:
        raise ValueError(f"fastgan: {layer} expects input with {expected} channels (from its weight of shape "
                         f"{_shape(weight)}), got {x.size(1)} channels in input of shape {_shape(x)}")
    _check_input_matches_weight(x, weight, layer)
    if not transposed:
        k, p, d = pair(weight.shape[2:]), pair(padding), pair(dilation)
        for axis, name in ((0, "height"), (1, "width")):
            extent = d[axis] * (k[axis] - 1) + 1
            if x.size(2 + axis) + 2 * p[axis] < extent:
                raise ValueError(f"fastgan: {layer}: input {name} {x.size(2 + axis)} (+ 2*padding {p[axis]}) is "
                                 f"smaller than the kernel's extent {extent}; input shape {_shape(x)}")


def check_batch_norm(x, weight, bias, running_mean, running_var, layer, norm="BatchNorm"):
    """A norm's per-channel tensors (BatchNorm's, or InstanceNorm's with norm="InstanceNorm"):
    one value per channel, on the input's device, floating point."""
    c = x.size(1)
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is None:
            continue
        if t.dim() != 1 or t.numel() != c:
            raise ValueError(f"fastgan: {layer}: {norm} {name} has shape {_shape(t)} but the input has {c} "
                             f"channels (input shape {_shape(x)})")
        if t.device != x.device:
            raise RuntimeError(f"fastgan: {layer}: {norm} {name} is on {t.device} but input is on {x.device}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"fastgan: {layer}: {norm} {name} must be a floating-point tensor, got {t.dtype}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"fastgan: {layer}: give both running_mean and running_var, or neither")


def check_num_batches_tracked(t, x, layer):
    if t is not None and (t.numel() != 1 or t.dtype != torch.int64 or t.device != x.device):
        raise ValueError(f"fastgan: {layer}: num_batches_tracked must be a one-element torch.int64 tensor on "
                         f"{x.device}, got {t.dtype} of shape {_shape(t)} on {t.device}")


def check_training_batch(x):
    # Same message as torch.nn.functional.batch_norm, so code that catches it keeps working.
    if x.size(0) * x.size(2) * x.size(3) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")


def check_linear(x, weight, bias, layer):
    """nn.Linear's arguments, worded as csrc/checks.h words them."""
    check_float_tensor(x, "input")
    check_float_tensor(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"fastgan: {layer} expects a 2-D weight (out_features, in_features), got shape "
                         f"{_shape(weight)}")
    if x.dim() < 1 or x.size(-1) != weight.size(1):
        raise ValueError(f"fastgan: {layer} expects input with {weight.size(1)} features in its last dimension (from "
                         f"its weight of shape {_shape(weight)}), got input of shape {_shape(x)}")
    _check_input_matches_weight(x, weight, layer)
    if bias is None:
        return
    if bias.dim() != 1 or bias.size(0) != weight.size(0):
        raise ValueError(f"fastgan: {layer}: bias has shape {_shape(bias)} but the weight has {weight.size(0)} "
                         f"output features")
    if bias.device != weight.device:
        raise RuntimeError(f"fastgan: {layer}: bias is on {bias.device} but weight is on {weight.device}")
    if bias.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"fastgan: {layer}: bias dtype {bias.dtype} does not match weight dtype {weight.dtype}")


def check_negative_slope(activation, negative_slope, layer):
    if activation == "leaky_relu" and not negative_slope >= 0:  # NaN too, as the C++ check
        raise ValueError(f"fastgan: {layer}: negative_slope must be >= 0 (the backward reads the sign from the "
                         f"output), got {float(negative_slope)!r}")


REDUCTIONS = logit_losses.REDUCTIONS


def check_loss_arguments(target, reduction, tensor_target=True):
    """What the loss ops' schemas cannot say: the reduction's name, and a target that is a
    Python float (or, with tensor_target, a tensor)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"fastgan: reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    if isinstance(target, torch.Tensor) and tensor_target:
        return
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        kinds = "a tensor or a Python float" if tensor_target else "a Python float"
        raise TypeError(f"fastgan: target must be {kinds}, got {type(target).__name__}")


LOGIT_LOSSES = tuple(sorted(logit_losses.LOGIT_LOSSES))


def _check_reduction(reduction):
    if reduction not in (0, 1, 2):
        raise ValueError(f"fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got {reduction}")


def check_logit_loss(input, target, kind, reduction):
    """logit_loss's schema arguments, worded as csrc/args/logit_loss.h words them."""
    check_float_tensor(input, "input")
    _check_reduction(reduction)
    if kind not in LOGIT_LOSSES:
        raise ValueError(f"fastgan: unknown logit loss '{kind}'; expected one of {list(LOGIT_LOSSES)}")
    if kind in ("hinge", "linear") and target not in (0.0, 1.0):
        # {:g} prints the target as C++'s stream does (2, 0.5), so both paths say the same.
        raise ValueError(f"fastgan: the {kind} loss takes target 1.0 (real) or 0.0 (fake), got {target:g}")


def check_bce(input, target, reduction):
    """bce_with_logits's schema arguments (target: a tensor or None), worded as
    csrc/args/logit_loss.h words them."""
    check_float_tensor(input, "input")
    _check_reduction(reduction)
    if target is not None:
        if target.shape != input.shape:
            raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
        if not target.is_floating_point():
            raise TypeError(f"fastgan: target must be a floating-point tensor, got {target.dtype}")
        if target.device != input.device:
            raise RuntimeError(f"fastgan: target is on {target.device} but input is on {input.device}")


def check_upfirdn2d(input, filter, up, down, padding):
    """upfirdn2d's arguments, as csrc/args/upfirdn2d.h checks them (the filter's requires_grad first,
    as the C++ autograd kernel refuses it before the op's checks run)."""
    if isinstance(filter, torch.Tensor) and torch.is_grad_enabled() and filter.requires_grad:
        raise NotImplementedError("fastgan.upfirdn2d: the filter gets no gradient; pass one that does not require "
                                  "grad (filter.detach())")
    check_float_tensor(input, "input")
    if input.dim() != 4:
        raise ValueError(f"fastgan: upfirdn2d expects a 4-D input (N, C, H, W), got a {input.dim()}-D tensor of "
                         f"shape {_shape(input)}")
    check_float_tensor(filter, "filter")
    if filter.dim() not in (1, 2) or filter.numel() == 0:
        raise ValueError(f"fastgan: upfirdn2d expects a filter of shape (taps,) (separable) or (height, width) with "
                         f"at least one tap, got shape {_shape(filter)}")
    if filter.device != input.device:
        raise RuntimeError(f"fastgan: filter is on {filter.device} but input is on {input.device}")
    for name, v in (("up", up), ("down", down)):
        if len(v) != 2 or min(v) < 1:
            raise ValueError(f"fastgan: upfirdn2d: {name} must be 2 integers [x, y], each >= 1, got {list(v)}")
    if len(padding) != 4:
        raise ValueError(f"fastgan: upfirdn2d: padding must be 4 integers [x0, x1, y0, y1], got {list(padding)}")
    fw = filter.shape[-1]
    fh = fw if filter.dim() == 1 else filter.shape[0]
    h, w = input.shape[2:]
    axes = ((w, up[0], down[0], padding[0], padding[1], fw), (h, up[1], down[1], padding[2], padding[3], fh))
    if not all(reference.fir_axis_fits(*axis) for axis in axes):
        raise ValueError(f"fastgan: upfirdn2d: the upsampled, padded input must stay below 2^30 samples per axis, got "
                         f"input of shape {_shape(input)}, up {list(up)}, padding {list(padding)}")
    if min(reference.fir_out_len(*axis) for axis in axes) < 1:
        raise ValueError(f"fastgan: upfirdn2d: input of shape {_shape(input)} with up {list(up)}, padding "
                         f"{list(padding)} and a filter of shape {_shape(filter)} leaves no output: the upsampled, "
                         f"padded input must have at least as many samples as the filter has taps along each axis")
