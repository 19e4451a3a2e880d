"""The fastgan ops made of stock torch ops. This is the fallback when fastgan._C is not
built, the oracle the tests compare the kernels with, and the differentiable formula the
fused ops' backward uses when a second derivative is asked for (create_graph=True)."""
import torch
import torch.nn.functional as F

from .activations import activate, grad_from_output


def batch_norm_act(input, weight, bias, mean, var, use_batch_stats, eps, activation, negative_slope):
    """Normalise with batch statistics (use_batch_stats) or with the given mean/var, then activate.
    Running statistics are not touched here."""
    if use_batch_stats:
        y = F.batch_norm(input, None, None, weight, bias, True, 0.0, eps)
    else:
        y = F.batch_norm(input, mean, var, weight, bias, False, 0.0, eps)
    return activate(y, activation, negative_slope)


def batch_norm_act_grads(grad_out, input, weight, bias, mean, var, use_batch_stats, eps, activation,
                         negative_slope, create_graph):
    """(grad_input, grad_weight, grad_bias) by re-running the reference forward under autograd.
    Differentiable when create_graph is set, which is what double backward needs."""
    with torch.enable_grad():
        leaves = [t if t.requires_grad else t.detach().requires_grad_() for t in (input,)]
        params = [p for p in (weight, bias) if p is not None]
        params = [p if p.requires_grad else p.detach().requires_grad_() for p in params]
        w = params[0] if weight is not None else None
        b = params[-1] if bias is not None else None
        out = batch_norm_act(leaves[0], w, b, mean.detach(), var.detach(), use_batch_stats, eps, activation,
                             negative_slope)
        grads = torch.autograd.grad(out, leaves + params, grad_out, create_graph=create_graph, allow_unused=True)
    grad_input = grads[0]
    grad_weight = grads[1] if weight is not None else None
    grad_bias = grads[-1] if bias is not None else None
    return grad_input, grad_weight, grad_bias


def activation(input, name, negative_slope):
    return activate(input, name, negative_slope)


def activation_backward(grad_out, output, name, negative_slope):
    return grad_out * grad_from_output(output, name, negative_slope)


def bce_with_logits(input, target, reduction):
    if not isinstance(target, torch.Tensor):
        target = torch.full_like(input, float(target))
    return F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction=reduction)
