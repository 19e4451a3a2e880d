"""The common GAN losses on D's logits, and the gradient penalties (WGAN-GP, R1).

    gan_loss(real_logits, fake_logits, kind)   D's loss (fake_logits of detached fakes)
    gan_loss(None, fake_logits, kind)          G's loss (fake_logits of G's fakes)

kind      D                                          G
bce       bce(real, 1) + bce(fake, 0)                bce(fake, 1) (non-saturating)
hinge     mean(relu(1 - real)) + mean(relu(1 + fake)) -mean(fake)
lsgan     mean((real - 1)^2) / 2 + mean(fake^2) / 2  mean((fake - 1)^2) / 2
wgan-gp   mean(fake) - mean(real)                    -mean(fake)
(wgan-gp's penalty is gradient_penalty, added to D's loss by the caller.)

D's loss is a sum of a term on the real logits and one on the fake logits (d_real_loss,
d_fake_loss), so a trainer may run the two passes with separate backwards. Every term is one
call of fastgan's fused loss+gradient kernel (logit_loss below: bce, hinge, lsgan, and linear
for the Wasserstein terms and G's hinge loss). fastgan.functional exports all of them."""
from typing import Optional, Union

import torch
from torch import Tensor

from . import _checks, reference
from ._dispatch import run
from ._fake import empty_like_layout, fake

# Each GAN loss as (kind of logit_loss, target) for D's real term, D's fake term and G's loss.
_TERMS = {
    "bce": (("bce", 1.0), ("bce", 0.0), ("bce", 1.0)),
    "hinge": (("hinge", 1.0), ("hinge", 0.0), ("linear", 1.0)),
    "lsgan": (("lsgan", 1.0), ("lsgan", 0.0), ("lsgan", 1.0)),
    "wgan-gp": (("linear", 1.0), ("linear", 0.0), ("linear", 1.0)),
}
GAN_LOSSES = tuple(_TERMS)


def bce_with_logits(input: Tensor, target: Union[Tensor, float], reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on logits, loss and gradient in one pass (the backward is a multiply
    by the gradient saved in the forward), with torch's binary_cross_entropy_with_logits's result.

    Args:
        input: the logits, a floating-point tensor of any shape. Under autocast the loss runs in
            float32, as torch's does.
        target: a floating-point tensor of input's shape and device, or a Python float for every
            element (1.0, 0.0, 0.9 for label smoothing: no tensor is made).
        reduction: "mean", "sum" or "none".

    Returns:
        The loss: a scalar, or input's shape for "none".

    Raises:
        TypeError: input or a target tensor not floating point; a target neither a tensor nor a
            float. ValueError: a target of another shape; an unknown reduction. RuntimeError: a
            target on another device."""
    _checks.check_loss_arguments(target, reduction)
    input = _float_under_autocast(input)
    tensor = isinstance(target, Tensor)
    return run("bce_with_logits", reference.bce_with_logits, input, target if tensor else None,
               0.0 if tensor else float(target), _checks.REDUCTIONS[reduction])


def logit_loss(input: Tensor, target: float, kind: str, reduction: str = "mean") -> Tensor:
    """One of the GAN losses on logits against a target value, loss and gradient in one pass:
    kind bce, hinge (max(0, 1 - s x)), lsgan ((x - t)^2 / 2) or linear (-s x), with s = +1 for
    target 1.0 (real) and -1 for 0.0 (fake). fastgan.functional.gan_loss composes D's and G's
    losses from these.

    Args:
        input: the logits, a floating-point tensor of any shape (float32 under autocast).
        target: a Python float; hinge and linear take only 1.0 (real) and 0.0 (fake).
        kind: "bce", "hinge", "lsgan" or "linear".
        reduction: "mean", "sum" or "none".

    Returns:
        The loss: a scalar, or input's shape for "none".

    Raises:
        TypeError: input not floating point, a target that is not a float. ValueError: an
            unknown kind or reduction, a hinge or linear target other than 0.0 and 1.0."""
    _checks.check_loss_arguments(target, reduction, tensor_target=False)
    input = _float_under_autocast(input)
    return run("logit_loss", reference.logit_loss, input, float(target), kind, _checks.REDUCTIONS[reduction])


def _float_under_autocast(input):
    """The logits in float32 under autocast, as torch's own losses compute them."""
    if isinstance(input, Tensor) and torch.is_autocast_enabled(input.device.type):
        return input.float()
    return input


def _loss_outputs(input, reduction):
    """(loss, d loss / d input) as both loss ops return them: the loss per element (reduction
    0, none) or a scalar, and the gradient in the input's layout."""
    loss = empty_like_layout(input) if reduction == 0 else input.new_empty(())
    return loss, empty_like_layout(input)


@fake("bce_with_logits")
def _bce_with_logits_fake(input, target, target_value, reduction):
    return _loss_outputs(input, reduction)


@fake("logit_loss")
def _logit_loss_fake(input, target, kind, reduction):
    return _loss_outputs(input, reduction)


def _check_kind(kind):
    if kind not in GAN_LOSSES:
        raise ValueError(f"fastgan: unknown GAN loss {kind!r}; expected one of {list(GAN_LOSSES)}")


def _term(logits, kind, which):
    """One fused logit_loss call for _TERMS[kind][which] (0: D's real term, 1: D's fake, 2: G's)."""
    _check_kind(kind)
    loss_kind, target = _TERMS[kind][which]
    return logit_loss(logits, target, loss_kind)


def d_real_loss(real_logits: Tensor, kind: str = "bce") -> Tensor:
    """D's loss term on the real samples' logits (the table above, left column, first term).

    Args:
        real_logits: D's logits for real samples, any shape, floating point.
        kind: 'bce', 'hinge', 'lsgan' or 'wgan-gp'.
    Returns:
        A 0-D tensor, the mean over every logit; one fused loss+gradient call.
    Raises:
        ValueError: an unknown kind.
        TypeError: logits that are not floating point.
    """
    return _term(real_logits, kind, 0)


def d_fake_loss(fake_logits: Tensor, kind: str = "bce") -> Tensor:
    """D's loss term on the fake samples' logits (the table above, left column, second term);
    give D the fakes detached from G.

    Args:
        fake_logits: D's logits for generated samples, any shape, floating point.
        kind: 'bce', 'hinge', 'lsgan' or 'wgan-gp'.
    Returns:
        A 0-D tensor, the mean over every logit.
    Raises:
        ValueError: an unknown kind.
        TypeError: logits that are not floating point.
    """
    return _term(fake_logits, kind, 1)


def g_loss(fake_logits: Tensor, kind: str = "bce") -> Tensor:
    """G's loss on D's logits for G's samples (the table above, right column; bce is the
    non-saturating loss).

    Args:
        fake_logits: D's logits for generated samples (not detached), any shape, floating point.
        kind: 'bce', 'hinge', 'lsgan' or 'wgan-gp'.
    Returns:
        A 0-D tensor, the mean over every logit.
    Raises:
        ValueError: an unknown kind.
        TypeError: logits that are not floating point.
    """
    return _term(fake_logits, kind, 2)


def gan_loss(real_logits: Optional[Tensor], fake_logits: Tensor, kind: str = "bce") -> Tensor:
    """D's loss when real_logits is given, G's when it is None (see the module docstring).

    Args:
        real_logits: D's logits for real samples, or None for G's loss.
        fake_logits: D's logits for generated samples (detached for D's loss).
        kind: 'bce', 'hinge', 'lsgan' or 'wgan-gp' (whose gradient_penalty the caller adds).
    Returns:
        A 0-D tensor: d_real_loss + d_fake_loss, or g_loss.
    Raises:
        ValueError: an unknown kind.
        TypeError: logits that are not floating point.
    """
    if real_logits is None:
        return g_loss(fake_logits, kind)
    return d_real_loss(real_logits, kind) + d_fake_loss(fake_logits, kind)


def _input_grad(logits: Tensor, inputs: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(d, real: Tensor, fake: Tensor, weight: float = 10.0, d_args=(), generator=None) -> Tensor:
    """WGAN-GP: weight * mean((|grad_x D(x)| - 1)^2) at random points between real and fake
    samples (Gulrajani et al., 2017). It differentiates D's input gradient, so D's layers need a
    double backward (fastgan's fused layers have one). d_args follow the images in D's call (a
    conditional D's labels); generator draws the points (CPU).

    Args:
        d: the discriminator, called as d(x, *d_args).
        real, fake: batches of the same shape; fake is detached here.
        weight: the penalty's weight (lambda, 10 in the paper).
        d_args: further arguments of d after the images.
        generator: a CPU torch.Generator for the interpolation points, or None.
    Returns:
        A 0-D tensor to add to D's loss; differentiable in D's parameters.
    """
    eps = torch.rand(real.size(0), *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype)
    x = torch.lerp(fake.detach(), real.detach(), eps.to(real.device)).requires_grad_(True)
    norms = _input_grad(d(x, *d_args), x).norm(dim=1)
    return weight * (norms - 1.0).square().mean()


def r1_penalty(real_logits: Tensor, real: Tensor, gamma: float) -> Tensor:
    """R1: gamma / 2 * mean(|grad_x D(x)|^2) on real samples (Mescheder et al., 2018). real
    must have required grad when D ran on it.

    Args:
        real_logits: D's logits for `real`, from a forward with real.requires_grad set.
        real: the real batch D ran on.
        gamma: the penalty's weight.
    Returns:
        A 0-D tensor to add to D's loss; differentiable in D's parameters.
    Raises:
        ValueError: real does not require grad.
    """
    if not real.requires_grad:
        raise ValueError("fastgan: r1_penalty needs the real images to require grad when D runs on them "
                         "(real.requires_grad_(True) before the forward)")
    return 0.5 * gamma * _input_grad(real_logits, real).square().sum(1).mean()
