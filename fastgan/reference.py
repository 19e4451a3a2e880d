"""The fastgan ops made of stock torch ops: the fallback when fastgan._C is not built or does
not serve a tensor's device, and the oracle the tests compare the kernels with. (The fused ops'
double backward has its own stock-op formula in C++, csrc/autograd_layers.cpp.)

The fallback functions at the top take each op's schema arguments, in the schema's order
(csrc/op_list.inc), run the op's checks (the C++ checks' words, _checks.py) and return the
op's result: fastgan._dispatch.run calls them where it would call the op. Below them, the
stock-op computations they and the tests share."""
import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format

from . import _checks
from .activations import activate, check_activation, grad_from_output
from .logit_losses import LOGIT_LOSSES, REDUCTIONS

# The schemas' int reduction indexes this (the one table: logit_losses.REDUCTIONS, name -> int).
REDUCTION_NAMES = tuple(sorted(REDUCTIONS, key=REDUCTIONS.get))


# --- The ops' fallbacks: schema arguments, checks, the result -----------------------------------

def batch_norm_act(input, weight, bias, running_mean, running_var, num_batches_tracked, training, momentum, eps,
                   activation, negative_slope):
    """As nn.BatchNorm2d.forward then the activation: batch statistics in training (or without
    running statistics), and then the running statistics and the counter updated in place."""
    layer = _checks.layer_name("BatchNorm2d", activation=activation)
    check_activation(activation)
    _checks.check_4d(input, "input", layer)
    _check_batch_norm(input, weight, bias, running_mean, running_var, num_batches_tracked, training, layer)
    use_batch_stats = training or running_mean is None
    update = training and running_mean is not None
    factor = 0.0 if momentum is None else momentum
    if update and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    if update:
        # The update goes through copies of the running buffers: torch up to 2.11 saves them for
        # backward, so DDP's buffer broadcast between D(real), D(fake) and one backward would
        # invalidate the graph (the fused path never saves them either). Copies of C values
        # each, rather than a second pass over the activation.
        mean, var = running_mean.clone(), running_var.clone()
        y = F.batch_norm(input, mean, var, weight, bias, True, factor, eps)
        with torch.no_grad():
            running_mean.copy_(mean)
            running_var.copy_(var)
    else:
        y = F.batch_norm(input, running_mean if not use_batch_stats else None,
                         running_var if not use_batch_stats else None, weight, bias, use_batch_stats, 0.0, eps)
    return activate(y, activation, negative_slope)


def conv_bn_act(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups, bn_weight,
                bn_bias, running_mean, running_var, num_batches_tracked, training, momentum, eps, activation,
                negative_slope):
    check_activation(activation)
    layer = _checks.layer_name(_checks.conv_module(transposed), "BatchNorm2d", activation=activation)
    _checks.check_conv(input, weight, transposed=transposed, padding=padding, dilation=dilation, groups=groups,
                       layer=layer)
    y = conv(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups)
    _check_batch_norm(y, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training, layer)
    return batch_norm_act(y, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training, momentum,
                          eps, activation, negative_slope)


def conv_act(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, activation,
             negative_slope):
    check_activation(activation)
    layer = _checks.layer_name(_checks.conv_module(transposed), activation=activation)
    _checks.check_negative_slope(activation, negative_slope, layer)
    _checks.check_conv(input, weight, transposed=transposed, padding=padding, dilation=dilation, groups=groups,
                       layer=layer)
    y = conv(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return activate(y, activation, negative_slope)


def linear_act(input, weight, bias, activation, negative_slope):
    check_activation(activation)
    layer = _checks.layer_name("Linear", activation=activation)
    _checks.check_negative_slope(activation, negative_slope, layer)
    _checks.check_linear(input, weight, bias, layer)
    return activate(linear(input, weight, bias), activation, negative_slope)


def activation(input, activation, negative_slope):
    check_activation(activation)
    _checks.check_float_tensor(input, "input")
    _checks.check_negative_slope(activation, negative_slope, "activation")
    return activate(input, activation, negative_slope)


def bce_with_logits(input, target, target_value, reduction):
    """target: a tensor of input's shape, or None for target_value everywhere."""
    _checks.check_bce(input, target, reduction)
    if target is None:
        target = torch.full_like(input, float(target_value))
    return F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction=REDUCTION_NAMES[reduction])


def logit_loss(input, target, kind, reduction):
    _checks.check_logit_loss(input, target, kind, reduction)
    if kind == "bce":  # torch's own reduction, as stock code computes it
        return bce_with_logits(input, None, target, reduction)
    loss = LOGIT_LOSSES[kind](input, float(target))
    return loss if reduction == 0 else loss.mean() if reduction == 1 else loss.sum()


def _check_batch_norm(y, weight, bias, running_mean, running_var, num_batches_tracked, training, layer):
    _checks.check_batch_norm(y, weight, bias, running_mean, running_var, layer)
    _checks.check_num_batches_tracked(num_batches_tracked, y, layer)
    if training or running_mean is None:
        _checks.check_training_batch(y)


# --- The stock-op computations ------------------------------------------------------------------

def normalize_act(input, weight, bias, mean, var, use_batch_stats, eps, activation, negative_slope):
    """Normalise with batch statistics (use_batch_stats) or with the given mean/var, then activate.
    Running statistics are not touched here."""
    if use_batch_stats:
        y = F.batch_norm(input, None, None, weight, bias, True, 0.0, eps)
    else:
        y = F.batch_norm(input, mean, var, weight, bias, False, 0.0, eps)
    return activate(y, activation, negative_slope)


def conv(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    if transposed:
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def linear(input, weight, bias):
    return F.linear(input, weight, bias)


def activation_backward(grad_out, output, name, negative_slope):
    return grad_out * grad_from_output(output, name, negative_slope)


def bias_act(input, bias, name, negative_slope):
    return activate(input + bias, name, negative_slope)


def bias_act_backward(grad_out, output, name, negative_slope):
    g = activation_backward(grad_out, output, name, negative_slope)
    return g, g.reshape(-1, g.size(-1)).sum(0)


# --- The split BatchNorm ops synchronised BatchNorm runs between its all_reduces. --------------

def stats_dtype(input):
    """The dtype BatchNorm statistics are kept in: float64 for float64 input, else float32."""
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def batch_norm_stats(input):
    """(mean, biased var) per channel, in the statistics dtype."""
    var, mean = torch.var_mean(input.to(stats_dtype(input)), dim=(0, 2, 3), correction=0)
    return mean, var


def _per_channel(t):
    return t[None, :, None, None]


def _grad_pre_activation(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope):
    """(g, x - mean, invstd): g = grad_out * act'(pre-activation), in the statistics dtype."""
    dt = stats_dtype(input)
    x = input.to(dt)
    invstd = torch.rsqrt(var.to(dt) + eps)
    xmu = x - _per_channel(mean.to(dt))
    pre = xmu * _per_channel(invstd)
    if weight is not None:
        pre = pre * _per_channel(weight.to(dt))
    if bias is not None:
        pre = pre + _per_channel(bias.to(dt))
    with torch.enable_grad():  # the activation's own derivative, any slope
        pre = pre.detach().requires_grad_()
        (g,) = torch.autograd.grad(activate(pre, activation, negative_slope), pre, grad_out.to(dt))
    return g, xmu, invstd


def batch_norm_act_backward_reduce(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope):
    """(sum g, sum g * (x - mean)) per channel."""
    g, xmu, _ = _grad_pre_activation(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope)
    return g.sum((0, 2, 3)), (g * xmu).sum((0, 2, 3))


def batch_norm_act_backward_elemt(grad_out, input, weight, bias, mean, var, mean_dy, mean_dy_xmu, eps, activation,
                                  negative_slope):
    """grad_input from the global means of the two sums."""
    g, xmu, invstd = _grad_pre_activation(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope)
    scale = invstd if weight is None else invstd * weight.to(invstd.dtype)
    k_x = mean_dy_xmu.to(invstd.dtype) * invstd * invstd
    grad = _per_channel(scale) * (g - _per_channel(mean_dy.to(g.dtype)) - xmu * _per_channel(k_x))
    return grad.to(input.dtype)


def fir_axis_fits(n, up, down, pad0, pad1, taps):
    """Whether one axis fits the CUDA kernels' 32-bit index math, as csrc/fir_taps.h decides."""
    limit = 1 << 30
    return (n < limit and up < limit and down < limit and taps < limit and abs(pad0) < limit and abs(pad1) < limit
            and n * up + abs(pad0) + abs(pad1) + taps < limit)


def fir_out_len(n, up, down, pad0, pad1, taps):
    """upfirdn2d's output length along one axis (0 when nothing is left), as csrc/fir_taps.h."""
    span = n * up + pad0 + pad1 - taps
    return 0 if span < 0 else span // down + 1


def upfirdn2d(input, filter, up, down, padding, flip_filter, gain):
    """StyleGAN's upfirdn2d from its definition, per image and channel: upsample by inserting
    up - 1 zeros after each sample, pad by padding [x0, x1, y0, y1] (negative values crop),
    convolve with the filter (correlate if flip_filter; a 1-D filter is separable, its outer
    product with itself) times gain, keep every down-th sample. up, down: [x, y]."""
    n, c, h, w = input.shape
    (up_x, up_y), (down_x, down_y) = up, down
    px0, px1, py0, py1 = padding
    x = input
    if up_x > 1 or up_y > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up_x - 1, 0, 0, 0, up_y - 1]).reshape(n, c, h * up_y, w * up_x)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = filter.to(x.dtype)
    if f.dim() == 1:
        f = torch.outer(f, f)
    if not flip_filter:
        f = f.flip([0, 1])  # conv2d correlates
    out_shape = (n, c, fir_out_len(h, up_y, down_y, py0, py1, f.shape[0]), fir_out_len(w, up_x, down_x, px0, px1,
                                                                                       f.shape[1]))
    if c == 0:
        return x.new_zeros(out_shape).contiguous(memory_format=suggest_memory_format(input))
    weight = (f * gain)[None, None].expand(c, 1, *f.shape)
    out = F.conv2d(x, weight, groups=c, stride=(down_y, down_x))
    return out.contiguous(memory_format=suggest_memory_format(input))  # the zero insertion lost channels_last
