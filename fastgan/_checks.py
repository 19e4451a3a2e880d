"""Argument checks shared by the fused and the reference path: both raise the same clear
errors, so switching backends never changes what bad input does."""
import torch


def _shape(t):
    return tuple(t.shape)


def check_float_tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastgan: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"fastgan: {name} must be a floating-point tensor (float32, float64, float16 or "
                        f"bfloat16), got {t.dtype}")


def check_4d(t, name, layer):
    check_float_tensor(t, name)
    if t.dim() != 4:
        raise ValueError(f"fastgan: {layer} expects a 4-D {name} (N, C, H, W), got a {t.dim()}-D tensor of "
                         f"shape {_shape(t)}")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def check_conv(x, weight, *, transposed, stride, padding, dilation, groups, layer):
    check_4d(x, "input", layer)
    check_float_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"fastgan: {layer} expects a 4-D weight, got shape {_shape(weight)}")
    expected = weight.size(0) if transposed else weight.size(1) * groups
    if x.size(1) != expected:
        raise ValueError(f"fastgan: {layer} expects input with {expected} channels (from its weight of shape "
                         f"{_shape(weight)}), got {x.size(1)} channels in input of shape {_shape(x)}")
    if x.device != weight.device:
        raise ValueError(f"fastgan: {layer}: input is on {x.device} but weight is on {weight.device}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"fastgan: {layer}: input dtype {x.dtype} does not match weight dtype {weight.dtype}; "
                        f"convert one of them (e.g. model.to({x.dtype}) or input.to({weight.dtype}))")
    if not transposed:
        k, p, d = _pair(weight.shape[2:]), _pair(padding), _pair(dilation)
        for axis, name in ((0, "height"), (1, "width")):
            extent = d[axis] * (k[axis] - 1) + 1
            if x.size(2 + axis) + 2 * p[axis] < extent:
                raise ValueError(f"fastgan: {layer}: input {name} {x.size(2 + axis)} (+ 2*padding {p[axis]}) is "
                                 f"smaller than the kernel's extent {extent}; input shape {_shape(x)}")


def check_batch_norm(x, weight, bias, running_mean, running_var, layer):
    check_4d(x, "input", layer)
    c = x.size(1)
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and (t.dim() != 1 or t.numel() != c):
            raise ValueError(f"fastgan: {layer}: BatchNorm {name} has shape {_shape(t)} but the input has {c} "
                             f"channels (input shape {_shape(x)})")


def check_training_batch(x, layer):
    # Same message as torch.nn.functional.batch_norm, so code that catches it keeps working.
    size = x.size(0) * x.size(2) * x.size(3)
    if size == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.size()}")


def check_negative_slope(negative_slope, layer):
    if negative_slope < 0:
        raise ValueError(f"fastgan: {layer}: negative_slope must be >= 0 (the backward reads the sign from the "
                         f"output), got {negative_slope}")


REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def check_bce(input, target, reduction):
    check_float_tensor(input, "input")
    if reduction not in REDUCTIONS:
        raise ValueError(f"fastgan: reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}")
    if isinstance(target, torch.Tensor):
        if target.shape != input.shape:
            raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
        if not target.is_floating_point():
            raise TypeError(f"fastgan: target must be a floating-point tensor, got {target.dtype}")
        if target.device != input.device:
            raise ValueError(f"fastgan: target is on {target.device} but input is on {input.device}")
    elif not isinstance(target, (int, float)) or isinstance(target, bool):
        raise TypeError(f"fastgan: target must be a tensor or a Python float, got {type(target).__name__}")
