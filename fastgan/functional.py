"""Fused functions: each runs one compiled op when fastgan._C serves the tensor's device, and
the stock-PyTorch reference otherwise (fastgan._dispatch.run picks; the function only puts
its arguments in the op's schema order).

The compiled path is one dispatcher call per layer: the argument checks, the convolution
(ATen: oneDNN / cuDNN), the fused BatchNorm + activation, the running-stat update and the
autograd node are all C++. The reference path (fastgan.reference's function of the same
schema) runs the same checks in Python (_checks.py, the same words) and stock ops."""
from typing import Optional

import torch

from . import _checks, reference
from ._checks import pair
from ._dispatch import run
from ._fake import aten, conv_grads, empty_like_layout, fake, param_grad, stats_like
from .activations import check_activation
from .losses import GAN_LOSSES, bce_with_logits, gan_loss, gradient_penalty, logit_loss, r1_penalty  # noqa: F401
from .sync_batch_norm import sync_batch_norm_act  # noqa: F401  (part of this module's API)

Tensor = torch.Tensor

def batch_norm_act(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
                   momentum: Optional[float] = 0.1, eps: float = 1e-5, activation: str = "relu",
                   negative_slope: float = 0.0, num_batches_tracked: Optional[Tensor] = None) -> Tensor:
    """activation(batch_norm(input)) with nn.BatchNorm2d's semantics: batch statistics in
    training (or when there are no running stats), running statistics in eval; in training
    the running stats and num_batches_tracked are updated as BatchNorm2d updates them.

    Args:
        input: (N, C, H, W) floating-point tensor, NCHW or channels_last.
        running_mean, running_var: (C,) running statistics, updated in place in training, or
            None (both or neither).
        weight, bias: (C,) affine parameters, or None.
        training: normalise with the batch's statistics (and update the running ones).
        momentum: the running statistics' momentum; None for the cumulative average, which
            needs num_batches_tracked.
        eps: added to the variance.
        activation: "identity", "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope (any sign).
        num_batches_tracked: BatchNorm2d's one-element int64 counter, incremented in training,
            or None.

    Returns:
        A tensor of input's shape, dtype and memory format.

    Raises:
        ValueError: input that is not 4-D; per-channel tensors that are not (C,); one of the
            running statistics without the other; a training batch of one value per channel; an
            unknown activation. TypeError: tensors that are not floating point. RuntimeError:
            per-channel tensors on another device than input."""
    return run("batch_norm_act", reference.batch_norm_act, input, weight, bias, running_mean, running_var,
               num_batches_tracked, training, momentum, eps, activation, negative_slope)


# channels_last InstanceNorm on the CPU runs image by image from this many elements an image: a
# call per image against one transposing copy of the batch, forward+backward on this project's
# 2-core CPU: 0.44-0.49x at 2 Ki elements, 0.72-0.93x at 16 Ki, 1.39-1.50x at 64 Ki, 1.77-2.45x at
# 128-256 Ki (fp32, bf16). On a GPU a call per image is launches per image, where the copy is one:
# the batch of several images takes the copy there.
_IMAGE_BY_IMAGE_ELEMENTS = 65536


def instance_norm_act(input: Tensor, running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
                      weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, use_input_stats: bool = True,
                      momentum: float = 0.1, eps: float = 1e-5, activation: str = "identity",
                      negative_slope: float = 0.0) -> Tensor:
    """activation(F.instance_norm(input, ...)), with F.instance_norm's arguments and semantics,
    on the fused BatchNorm kernels: instance normalisation is BatchNorm's arithmetic over each
    (image, channel) plane, so the input runs as one BatchNorm over (1, N*C, H, W) (no copy for
    a contiguous NCHW input). A channels_last image is not copied to NCHW as stock copies it: a
    batch of one runs as a BatchNorm over that image, in place, and the result is channels_last;
    so does each image of a larger batch on the CPU, when images are large enough (64 Ki elements)
    for a call each to cost less than the copy.

    Args:
        input: (N, C, H, W) floating-point tensor.
        running_mean, running_var: (C,) running statistics, or None (both or neither). With
            use_input_stats they are updated in place, each with the batch's mean of its
            images' statistics (the variance unbiased), as stock does; without it they are
            what normalises (an InstanceNorm2d with track_running_stats, in eval).
        weight, bias: (C,) affine parameters, or None.
        use_input_stats: normalise each plane by its own statistics (InstanceNorm2d in
            training, or one without running statistics).
        momentum: the running statistics' momentum (InstanceNorm2d passes 0.0 for None).
        eps: added to the variance.
        activation: "identity", "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope.

    Returns:
        The (N, C, H, W) result: channels_last where it ran in place as above, otherwise
        contiguous, as F.instance_norm's.

    Raises:
        ValueError: input that is not 4-D; per-channel tensors that are not (C,); only one of
            the running statistics; no running statistics without use_input_stats; a plane of
            one value with use_input_stats. TypeError: a tensor that is not floating point."""
    check_activation(activation)
    layer = _checks.layer_name("InstanceNorm2d", activation=activation)
    _checks.check_4d(input, "input", layer)
    _checks.check_batch_norm(input, weight, bias, running_mean, running_var, layer, norm="InstanceNorm")
    n, c, h, w = input.shape
    if not use_input_stats:
        if running_mean is None:
            raise ValueError(f"fastgan: {layer}: use_input_stats=False normalises with running_mean and running_var, "
                             "but none were given")
        return batch_norm_act(input, running_mean, running_var, weight, bias, False, 0.0, eps, activation,
                              negative_slope).contiguous()
    if h * w == 1:  # stock's words (F.instance_norm)
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {input.size()}")
    if n == 1:  # its running statistics updated in place, as stock's mean over one image
        return batch_norm_act(input, running_mean, running_var, weight, bias, True, momentum, eps, activation,
                              negative_slope)
    # Each image's copy of the running statistics, which the kernels update in place as for the
    # (1, N*C, H, W) planes below; stock's update is their mean over the images.
    per_image = [None if t is None else t.expand(n, c).clone() for t in (running_mean, running_var)]
    if (input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
            and input.device.type == "cpu" and c * h * w >= _IMAGE_BY_IMAGE_ELEMENTS):
        # BatchNorm over each image where it lies (a slice of a channels_last batch is one channels_last
        # image), the results concatenated: a copy of the output, where the NCHW route copies the input
        # through a transposition (about 5x slower on a CPU) and returns NCHW to a channels_last model.
        out = torch.cat([batch_norm_act(image, *(None if t is None else t[i] for t in per_image), weight, bias, True,
                                        momentum, eps, activation, negative_slope)
                         for i, image in enumerate(input.split(1))])
    else:
        planes = input.contiguous().view(1, n * c, h, w)
        # Each per-channel parameter repeated n times, one value per plane (expand + reshape: one
        # copy; Tensor.repeat costs ~40 us of small ops a call on the CPU, as much as the kernel on
        # a small layer).
        stats = [None if t is None else t.view(n * c) for t in per_image]
        stats += [None if t is None else t.expand(n, c).reshape(n * c) for t in (weight, bias)]
        out = batch_norm_act(planes, stats[0], stats[1], stats[2], stats[3], True, momentum, eps, activation,
                             negative_slope).view(n, c, h, w)
    if running_mean is not None:
        with torch.no_grad():
            running_mean.copy_(per_image[0].mean(0))
            running_var.copy_(per_image[1].mean(0))
    return out


@fake("batch_norm_act")
def _batch_norm_act_fake(input, weight, bias, running_mean, running_var, num_batches_tracked, training, momentum, eps,
                         activation, negative_slope):
    return (empty_like_layout(input), *stats_like(input))


@fake("batch_norm_act_backward")
def _batch_norm_act_backward_fake(grad_out, input, weight, bias, save_mean, save_var, training, eps, activation,
                                  negative_slope):
    return (empty_like_layout(input), *stats_like(input))


@fake("batch_norm_update_stats")
def _batch_norm_update_stats_fake(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count):
    return None


def conv_bn_act(input: Tensor, weight: Tensor, conv_bias: Optional[Tensor], stride, padding, dilation,
                transposed: bool, output_padding, groups: int, bn_weight: Optional[Tensor],
                bn_bias: Optional[Tensor], running_mean: Optional[Tensor], running_var: Optional[Tensor],
                num_batches_tracked: Optional[Tensor], training: bool, momentum: Optional[float], eps: float,
                activation: str, negative_slope: float) -> Tensor:
    """activation(batch_norm(conv(input))): the convolution through torch (oneDNN / cuDNN), then
    batch_norm_act's statistics, normalisation, running-statistics update and activation in
    one fused kernel, one autograd node for all of it. The general form of the fused layers
    below and of fastgan.nn's conv + BatchNorm layers.

    Args:
        input: (N, C_in, H, W) floating-point tensor.
        weight: the conv's weight, as nn.Conv2d (C_out, C_in / groups, kH, kW) or
            nn.ConvTranspose2d (C_in, C_out / groups, kH, kW) holds it.
        conv_bias: the conv's bias (C_out,), or None.
        stride, padding, dilation, output_padding: two ints each (or one for both), as the
            conv modules take them; output_padding only for transposed.
        transposed: conv_transpose2d rather than conv2d.
        groups: the conv's groups.
        bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training,
            momentum, eps: the BatchNorm2d's, as batch_norm_act takes them.
        activation, negative_slope: as batch_norm_act takes them.

    Returns:
        The (N, C_out, H_out, W_out) result in input's memory format.

    Raises:
        ValueError: input that is not 4-D, a channel count that does not match the weight, a
            spatial size smaller than the kernel, and batch_norm_act's errors. TypeError: input
            and weight of different dtypes, tensors that are not floating point."""
    return run("conv_bn_act", reference.conv_bn_act, input, weight, conv_bias, stride, padding, dilation, transposed,
               output_padding, groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training,
               momentum, eps, activation, negative_slope)


@fake("conv_bn_act")
def _conv_bn_act_fake(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups,
                      bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training, momentum, eps,
                      activation, negative_slope):
    y = aten.convolution(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups)
    return (empty_like_layout(y), y, *stats_like(y))


@fake("conv_bn_act_backward")
def _conv_bn_act_backward_fake(grad_out, input, weight, conv_out, bn_weight, bn_bias, save_mean, save_var, stride,
                               padding, dilation, transposed, output_padding, groups, batch_stats, eps, activation,
                               negative_slope, output_mask):
    grad_y = empty_like_layout(conv_out)
    gi, gw, gb = conv_grads(grad_y, input, weight, conv_out.size(1), stride, padding, dilation, transposed,
                             output_padding, groups, output_mask)
    stats = stats_like(conv_out)[0]
    return gi, gw, gb, param_grad(stats, bn_weight), param_grad(stats, bn_bias)


def conv_act(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, transposed: bool,
             output_padding, groups: int, activation: str, negative_slope: float = 0.0) -> Tensor:
    """activation(conv(input)): the convolution through torch with the bias and activation
    fused after it; the backward reads the activation's derivative from its output, so it
    saves the output only.

    Args:
        input, weight, bias, stride, padding, dilation, transposed, output_padding, groups: the
            convolution's, as conv_bn_act takes them (bias may be None).
        activation: "identity", "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope, >= 0 (a negative slope cannot be read back from
            the output).

    Returns:
        The (N, C_out, H_out, W_out) result in input's memory format.

    Raises:
        ValueError: a negative negative_slope, an unknown activation, and conv_bn_act's conv
            errors. TypeError: as conv_bn_act."""
    return run("conv_act", reference.conv_act, input, weight, bias, stride, padding, dilation, transposed,
               output_padding, groups, activation, negative_slope)


@fake("conv_act")
def _conv_act_fake(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, activation,
                   negative_slope):
    y = aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return empty_like_layout(y)


@fake("conv_act_backward")
def _conv_act_backward_fake(grad_out, input, weight, output, stride, padding, dilation, transposed, output_padding,
                            groups, activation, negative_slope, output_mask):
    return conv_grads(empty_like_layout(output), input, weight, output.size(1), stride, padding, dilation,
                       transposed, output_padding, groups, output_mask)


def linear_act(input: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str,
               negative_slope: float = 0.0) -> Tensor:
    """activation(linear(input, weight, bias)): the matrix product through torch with the bias
    and activation fused after it; the backward reads the activation's derivative from its
    output, and saves the input only when the weight needs a gradient and the weight only when
    the input does, as torch's Linear does.

    Args:
        input: (*, in_features) floating-point tensor.
        weight: (out_features, in_features).
        bias: (out_features,), or None.
        activation: "identity", "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope, >= 0.

    Returns:
        A (*, out_features) tensor.

    Raises:
        ValueError: shapes that do not match, a negative negative_slope, an unknown activation.
        TypeError: tensors of different dtypes or not floating point."""
    return run("linear_act", reference.linear_act, input, weight, bias, activation, negative_slope)


@fake("linear_act")
def _linear_act_fake(input, weight, bias, activation, negative_slope):
    return input.new_empty((*input.shape[:-1], weight.size(0)))


@fake("linear_act_backward")
def _linear_act_backward_fake(grad_out, input, weight, output, activation, negative_slope, output_mask):
    # The autograd node passes None for the input without the weight's gradient, and for the
    # weight without the input's: the shapes come from what each gradient reads.
    out_features = output.size(-1)
    return (output.new_empty((*output.shape[:-1], weight.size(1))) if output_mask[0] else None,
            output.new_empty((out_features, input.size(-1))) if output_mask[1] else None,
            output.new_empty(out_features) if output_mask[2] else None)


@fake("bias_act")
def _bias_act_fake(input, bias, activation, negative_slope):
    return input.new_empty(input.shape)


@fake("bias_act_backward")
def _bias_act_backward_fake(grad_out, output, activation, negative_slope):
    return output.new_empty(output.shape), output.new_empty(output.shape[-1:])


def activation(input: Tensor, activation: str, negative_slope: float = 0.0) -> Tensor:
    """The activation of input, in one fused kernel whose backward needs only its output.

    Args:
        input: a floating-point tensor of any shape and memory format.
        activation: "identity", "relu", "leaky_relu", "tanh" or "sigmoid".
        negative_slope: leaky_relu's slope, >= 0.

    Returns:
        A tensor of input's shape, dtype and memory format.

    Raises:
        ValueError: an unknown activation, a negative negative_slope. TypeError: a tensor that
            is not floating point."""
    return run("activation", reference.activation, input, activation, negative_slope)


@fake("activation")
def _activation_fake(input, activation, negative_slope):
    return empty_like_layout(input)


@fake("activation_backward")
def _activation_backward_fake(grad_out, output, activation, negative_slope):
    return empty_like_layout(output)


def conv_transpose2d_bn_relu(input, weight, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked=None,
                             *, stride=1, padding=0, output_padding=0, groups=1, dilation=1, conv_bias=None,
                             training=False, momentum=0.1, eps=1e-5):
    """relu(batch_norm(conv_transpose2d(input, weight))): a DCGAN Generator hidden layer.
    conv_bn_act with transposed=True and ReLU; the arguments are conv_bn_act's (stride, padding,
    output_padding and dilation as an int or a pair), and so are the result and the errors."""
    return conv_bn_act(input, weight, conv_bias, pair(stride), pair(padding), pair(dilation), True,
                       pair(output_padding), groups, bn_weight, bn_bias, running_mean, running_var,
                       num_batches_tracked, training, momentum, eps, "relu", 0.0)


def conv2d_bn_leaky_relu(input, weight, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked=None,
                         *, stride=1, padding=0, groups=1, dilation=1, conv_bias=None, training=False,
                         momentum=0.1, eps=1e-5, negative_slope=0.2):
    """leaky_relu(batch_norm(conv2d(input, weight))): a DCGAN Discriminator hidden layer.
    conv_bn_act with a conv2d and LeakyReLU(negative_slope); the arguments are conv_bn_act's
    (stride, padding and dilation as an int or a pair), and so are the result and the errors."""
    return conv_bn_act(input, weight, conv_bias, pair(stride), pair(padding), pair(dilation), False, (0, 0),
                       groups, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training, momentum,
                       eps, "leaky_relu", negative_slope)


def conv2d_leaky_relu(input, weight, bias=None, *, stride=1, padding=0, groups=1, dilation=1,
                      negative_slope=0.2):
    """leaky_relu(conv2d(input, weight, bias)): the Discriminator's first layer. conv_act with
    a conv2d and LeakyReLU(negative_slope >= 0); arguments, result and errors are conv_act's."""
    return conv_act(input, weight, bias, pair(stride), pair(padding), pair(dilation), False, (0, 0), groups,
                    "leaky_relu", negative_slope)


def conv_transpose2d_tanh(input, weight, bias=None, *, stride=1, padding=0, output_padding=0, groups=1,
                          dilation=1):
    """tanh(conv_transpose2d(input, weight, bias)): the Generator's last layer. conv_act with
    transposed=True and Tanh; arguments, result and errors are conv_act's."""
    return conv_act(input, weight, bias, pair(stride), pair(padding), pair(dilation), True, pair(output_padding),
                    groups, "tanh", 0.0)
