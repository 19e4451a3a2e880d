"""The Python face of torch.ops.fastgan: the fake kernels (output shapes, dtypes and layouts
for torch.compile and opcheck), registered once. Autograd and the argument checks are in
C++ (csrc/autograd_*.cpp, csrc/checks.h), so an eager call never runs Python here."""
import torch
from torch._prims_common import suggest_memory_format

from ._backend import COMPILED
from .reference import stats_dtype

aten = torch.ops.aten


def _empty_like_layout(t):
    return torch.empty_like(t, memory_format=_layout(t))


def _layout(t):
    # Mirrors csrc/fastgan.h layout_of(): the kernels write outputs in the input's layout.
    if t.dim() == 4 and suggest_memory_format(t) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format


def _stats(input):
    stats = input.new_empty((input.size(1),), dtype=stats_dtype(input))
    return stats, torch.empty_like(stats)


def _param_grad(like, param):
    return None if param is None else torch.empty_like(like, dtype=param.dtype)  # a tensor of its own


def _conv_grads(grad_y, input, weight, out_channels, stride, padding, dilation, transposed, output_padding, groups,
                output_mask):
    if not any(output_mask):
        return None, None, None
    # ATen's own meta kernel says what the real convolution backward returns.
    return aten.convolution_backward(grad_y, input, weight, [out_channels] if output_mask[2] else None, stride,
                                     padding, dilation, transposed, output_padding, groups, output_mask)


def _register():
    @torch.library.register_fake("fastgan::batch_norm_act")
    def _(input, weight, bias, running_mean, running_var, num_batches_tracked, training, momentum, eps, activation,
          negative_slope):
        return (_empty_like_layout(input), *_stats(input))

    @torch.library.register_fake("fastgan::batch_norm_act_backward")
    def _(grad_out, input, weight, bias, save_mean, save_var, training, eps, activation, negative_slope):
        return (_empty_like_layout(input), *_stats(input))

    @torch.library.register_fake("fastgan::batch_norm_update_stats")
    def _(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count):
        return None

    @torch.library.register_fake("fastgan::batch_norm_stats")
    def _(input):
        return _stats(input)

    @torch.library.register_fake("fastgan::batch_norm_act_backward_reduce")
    def _(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope):
        return _stats(input)

    @torch.library.register_fake("fastgan::batch_norm_act_backward_elemt")
    def _(grad_out, input, weight, bias, mean, var, mean_dy, mean_dy_xmu, eps, activation, negative_slope):
        return _empty_like_layout(input)

    @torch.library.register_fake("fastgan::activation")
    def _(input, activation, negative_slope):
        return _empty_like_layout(input)

    @torch.library.register_fake("fastgan::activation_backward")
    def _(grad_out, output, activation, negative_slope):
        return _empty_like_layout(output)

    @torch.library.register_fake("fastgan::bias_act")
    def _(input, bias, activation, negative_slope):
        return input.new_empty(input.shape)

    @torch.library.register_fake("fastgan::bias_act_backward")
    def _(grad_out, output, activation, negative_slope):
        return output.new_empty(output.shape), output.new_empty(output.shape[-1:])

    @torch.library.register_fake("fastgan::bce_with_logits")
    def _(input, target, target_value, reduction):
        loss = _empty_like_layout(input) if reduction == 0 else input.new_empty(())
        return loss, _empty_like_layout(input)

    @torch.library.register_fake("fastgan::conv_bn_act")
    def _(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups, bn_weight, bn_bias,
          running_mean, running_var, num_batches_tracked, training, momentum, eps, activation, negative_slope):
        y = aten.convolution(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups)
        return (_empty_like_layout(y), y, *_stats(y))

    @torch.library.register_fake("fastgan::conv_bn_act_backward")
    def _(grad_out, input, weight, conv_out, bn_weight, bn_bias, save_mean, save_var, stride, padding, dilation,
          transposed, output_padding, groups, batch_stats, eps, activation, negative_slope, output_mask):
        grad_y = _empty_like_layout(conv_out)
        gi, gw, gb = _conv_grads(grad_y, input, weight, conv_out.size(1), stride, padding, dilation, transposed,
                                 output_padding, groups, output_mask)
        stats = _stats(conv_out)[0]
        return gi, gw, gb, _param_grad(stats, bn_weight), _param_grad(stats, bn_bias)

    @torch.library.register_fake("fastgan::conv_act")
    def _(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, activation,
          negative_slope):
        y = aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        return _empty_like_layout(y)

    @torch.library.register_fake("fastgan::conv_act_backward")
    def _(grad_out, input, weight, output, stride, padding, dilation, transposed, output_padding, groups, activation,
          negative_slope, output_mask):
        return _conv_grads(_empty_like_layout(output), input, weight, output.size(1), stride, padding, dilation,
                           transposed, output_padding, groups, output_mask)

    @torch.library.register_fake("fastgan::logit_loss")
    def _(input, target, kind, reduction):
        loss = _empty_like_layout(input) if reduction == 0 else input.new_empty(())
        return loss, _empty_like_layout(input)

    @torch.library.register_fake("fastgan::linear_act")
    def _(input, weight, bias, activation, negative_slope):
        return input.new_empty((*input.shape[:-1], weight.size(0)))

    @torch.library.register_fake("fastgan::linear_act_backward")
    def _(grad_out, input, weight, output, activation, negative_slope, output_mask):
        return (input.new_empty(input.shape) if output_mask[0] else None,
                weight.new_empty(weight.shape) if output_mask[1] else None,
                weight.new_empty(weight.size(0)) if output_mask[2] else None)


if COMPILED:
    _register()
