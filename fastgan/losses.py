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
call of fastgan's fused loss+gradient kernel (functional.logit_loss: bce, hinge, lsgan, and
linear for the Wasserstein terms and G's hinge loss)."""
from typing import Optional

import torch
from torch import Tensor

from .functional import logit_loss

GAN_LOSSES = ("bce", "hinge", "lsgan", "wgan-gp")


def _check_kind(kind):
    if kind not in GAN_LOSSES:
        raise ValueError(f"fastgan: unknown GAN loss {kind!r}; expected one of {list(GAN_LOSSES)}")


# Each GAN loss as (kind of logit_loss, target) for D's real term, D's fake term and G's loss.
_TERMS = {
    "bce": (("bce", 1.0), ("bce", 0.0), ("bce", 1.0)),
    "hinge": (("hinge", 1.0), ("hinge", 0.0), ("linear", 1.0)),
    "lsgan": (("lsgan", 1.0), ("lsgan", 0.0), ("lsgan", 1.0)),
    "wgan-gp": (("linear", 1.0), ("linear", 0.0), ("linear", 1.0)),
}


def d_real_loss(real_logits: Tensor, kind: str = "bce") -> Tensor:
    _check_kind(kind)
    return logit_loss(real_logits, _TERMS[kind][0][1], _TERMS[kind][0][0])


def d_fake_loss(fake_logits: Tensor, kind: str = "bce") -> Tensor:
    _check_kind(kind)
    return logit_loss(fake_logits, _TERMS[kind][1][1], _TERMS[kind][1][0])


def g_loss(fake_logits: Tensor, kind: str = "bce") -> Tensor:
    _check_kind(kind)
    return logit_loss(fake_logits, _TERMS[kind][2][1], _TERMS[kind][2][0])


def gan_loss(real_logits: Optional[Tensor], fake_logits: Tensor, kind: str = "bce") -> Tensor:
    """D's loss when real_logits is given, G's when it is None (see the module docstring)."""
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
    conditional D's labels); generator draws the points (CPU)."""
    eps = torch.rand(real.size(0), *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype)
    x = torch.lerp(fake.detach(), real.detach(), eps.to(real.device)).requires_grad_(True)
    norms = _input_grad(d(x, *d_args), x).norm(dim=1)
    return weight * (norms - 1.0).square().mean()


def r1_penalty(real_logits: Tensor, real: Tensor, gamma: float) -> Tensor:
    """R1: gamma / 2 * mean(|grad_x D(x)|^2) on real samples (Mescheder et al., 2018). real
    must have required grad when D ran on it."""
    if not real.requires_grad:
        raise ValueError("fastgan: r1_penalty needs the real images to require grad when D runs on them "
                         "(real.requires_grad_(True) before the forward)")
    return 0.5 * gamma * _input_grad(real_logits, real).square().sum(1).mean()
