"""The Python face of torch.ops.fastgan: fake kernels (shapes for torch.compile and
opcheck) and autograd, each registered once. The backward of every op is itself a
registered op; when a second derivative is asked for (create_graph=True) the backward
switches to the reference formula made of differentiable stock ops instead, so gradient
penalties get correct second derivatives."""
import torch
from torch._prims_common import suggest_memory_format

from . import reference
from ._backend import COMPILED


def _empty_like_layout(t):
    return torch.empty_like(t, memory_format=_layout(t))


def _layout(t):
    # Mirrors csrc/fastgan.h layout_of(): the kernels write outputs in the input's layout.
    if t.dim() == 4 and suggest_memory_format(t) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format


def _stats_dtype(t):
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _register():
    ops = torch.ops.fastgan

    @torch.library.register_fake("fastgan::batch_norm_act")
    def _(input, weight, bias, running_mean, running_var, training, eps, activation, negative_slope):
        c = input.size(1)
        stats = input.new_empty((c,), dtype=_stats_dtype(input))
        return _empty_like_layout(input), stats, torch.empty_like(stats)

    @torch.library.register_fake("fastgan::batch_norm_act_backward")
    def _(grad_out, input, weight, bias, save_mean, save_var, training, eps, activation, negative_slope):
        c = input.size(1)
        stats = input.new_empty((c,), dtype=_stats_dtype(input))
        return _empty_like_layout(input), stats, torch.empty_like(stats)

    @torch.library.register_fake("fastgan::batch_norm_update_stats")
    def _(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count):
        return None

    @torch.library.register_fake("fastgan::batch_norm_stats")
    def _(input):
        stats = input.new_empty((input.size(1),), dtype=_stats_dtype(input))
        return stats, torch.empty_like(stats)

    @torch.library.register_fake("fastgan::batch_norm_act_backward_reduce")
    def _(grad_out, input, weight, bias, mean, var, eps, activation, negative_slope):
        stats = input.new_empty((input.size(1),), dtype=_stats_dtype(input))
        return stats, torch.empty_like(stats)

    @torch.library.register_fake("fastgan::batch_norm_act_backward_elemt")
    def _(grad_out, input, weight, bias, mean, var, mean_dy, mean_dy_xmu, eps, activation, negative_slope):
        return _empty_like_layout(input)

    @torch.library.register_fake("fastgan::activation")
    def _(input, activation, negative_slope):
        return _empty_like_layout(input)

    @torch.library.register_fake("fastgan::activation_backward")
    def _(grad_out, output, activation, negative_slope):
        return _empty_like_layout(output)

    @torch.library.register_fake("fastgan::bce_with_logits")
    def _(input, target, target_value, reduction):
        loss = _empty_like_layout(input) if reduction == 0 else input.new_empty(())
        return loss, _empty_like_layout(input)

    # --- batch_norm_act -------------------------------------------------------------
    def bn_setup(ctx, inputs, output):
        input, weight, bias, running_mean, running_var, training, eps, activation, slope = inputs
        _, mean, var = output
        ctx.save_for_backward(input, weight, bias, mean, var)
        ctx.config = (training or running_mean is None, eps, activation, slope)
        ctx.mark_non_differentiable(mean, var)

    def bn_backward(ctx, grad_out, _grad_mean, _grad_var):
        input, weight, bias, mean, var = ctx.saved_tensors
        use_batch, eps, activation, slope = ctx.config
        if torch.is_grad_enabled():
            gi, gw, gb = reference.batch_norm_act_grads(grad_out, input, weight, bias, mean, var, use_batch, eps,
                                                        activation, slope, create_graph=True)
        else:
            gi, gw, gb = ops.batch_norm_act_backward(grad_out, input, weight, bias, mean, var, use_batch, eps,
                                                     activation, slope)
            gw = gw.to(weight.dtype) if weight is not None else None
            gb = gb.to(bias.dtype) if bias is not None else None
        return gi, gw, gb, None, None, None, None, None, None

    torch.library.register_autograd("fastgan::batch_norm_act", bn_backward, setup_context=bn_setup)

    # --- activation -----------------------------------------------------------------
    def act_setup(ctx, inputs, output):
        _, activation, slope = inputs
        ctx.save_for_backward(output)
        ctx.config = (activation, slope)

    def act_backward(ctx, grad_out):
        (output,) = ctx.saved_tensors
        activation, slope = ctx.config
        if torch.is_grad_enabled():
            return reference.activation_backward(grad_out, output, activation, slope), None, None
        return ops.activation_backward(grad_out, output, activation, slope), None, None

    torch.library.register_autograd("fastgan::activation", act_backward, setup_context=act_setup)

    # --- bce_with_logits ------------------------------------------------------------
    def bce_setup(ctx, inputs, output):
        input, target, target_value, reduction = inputs
        _, grad = output
        ctx.save_for_backward(input, target, grad)
        ctx.config = (target_value, reduction)
        ctx.mark_non_differentiable(grad)

    def bce_backward(ctx, grad_loss, _grad_grad):
        input, target, grad = ctx.saved_tensors
        target_value, reduction = ctx.config
        scale = 1.0 / input.numel() if reduction == 1 else 1.0
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            if torch.is_grad_enabled():
                t = target if target is not None else target_value
                grad_input = (torch.sigmoid(input) - t) * (grad_loss * scale)
            else:
                grad_input = grad * grad_loss  # the stored gradient, scaled: one elementwise op
        if target is not None and ctx.needs_input_grad[1]:
            grad_target = -input * (grad_loss * scale)
        return grad_input, grad_target, None, None

    torch.library.register_autograd("fastgan::bce_with_logits", bce_backward, setup_context=bce_setup)


if COMPILED:
    _register()
