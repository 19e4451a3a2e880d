"""conv + activation and the fused BCE-with-logits loss against stock PyTorch."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
import fastgan.functional as FF
from helpers import assert_close


@pytest.mark.parametrize("act,slope", [("leaky_relu", 0.2), ("tanh", 0.0), ("relu", 0.0), ("leaky_relu", 0.0),
                                       ("sigmoid", 0.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_activation_matches_stock(backend, device, act, slope, dtype, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, 9, generator=g).to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    stock = {"leaky_relu": lambda t: F.leaky_relu(t, slope), "tanh": torch.tanh, "relu": torch.relu,
             "sigmoid": torch.sigmoid}[act]
    expected, actual = stock(x1), FF.activation(x2, act, slope)
    assert_close(actual, expected, dtype)
    if layout == "channels_last":
        assert actual.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=g).to(device=device, dtype=dtype)
    assert_close(torch.autograd.grad(actual, x2, grad)[0], torch.autograd.grad(expected, x1, grad)[0], dtype)


def test_activation_double_backward(backend):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).requires_grad_()
    for act in ("tanh", "leaky_relu"):
        assert torch.autograd.gradgradcheck(lambda t: FF.activation(t, act, 0.2), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target", ["tensor", 1.0, 0.0, 0.9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 128, 5000])
def test_bce_matches_stock(backend, device, reduction, target, dtype, n):
    g = torch.Generator().manual_seed(n)
    x = (torch.randn(n, generator=g) * 4).to(device=device, dtype=dtype)
    t = torch.rand(n, generator=g).to(device=device, dtype=dtype) if target == "tensor" else target
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    t_full = t if target == "tensor" else torch.full_like(x, t)
    expected = F.binary_cross_entropy_with_logits(x1.double(), t_full.double(), reduction=reduction)
    actual = fastgan.nn.BCEWithLogitsLoss(reduction)(x2, t)
    assert actual.dtype == dtype and actual.shape == expected.shape
    # Stock torch computes half-precision BCE in half precision (x*t cancels); the fused
    # kernel accumulates in fp32, so only the reference path gets the looser bound.
    scale = 4.0 if backend == "reference" and dtype in (torch.float16, torch.bfloat16) else 1.0
    assert_close(actual, expected, dtype, scale=scale)
    grad = torch.rand(expected.shape, generator=g).to(device=device, dtype=torch.float64)
    (ge,) = torch.autograd.grad(expected, x1, grad)
    (ga,) = torch.autograd.grad(actual, x2, grad.to(dtype))
    assert_close(ga, ge, dtype)


def test_bce_target_gradient_and_double_backward(backend):
    x = torch.randn(6, dtype=torch.float64).requires_grad_()
    t = torch.rand(6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: FF.bce_with_logits(a, b), (x, t))
    assert torch.autograd.gradgradcheck(lambda a: FF.bce_with_logits(a, 0.9, "sum"), (x,))


def test_bce_extreme_logits_are_finite(backend, device):
    x = torch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0], device=device).requires_grad_()
    loss = FF.bce_with_logits(x, 1.0, "sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    ones = torch.ones(5, device=device, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(x.detach().double(), ones, reduction="sum")
    assert_close(loss, expected, torch.float32)


def test_bce_nan_propagates(backend, device):
    x = torch.tensor([0.5, float("nan")], device=device)
    assert torch.isnan(FF.bce_with_logits(x, 1.0))
    assert torch.isnan(FF.bce_with_logits(x, 1.0, "none")[1])


def test_bce_deterministic(backend, device):
    x = torch.randn(100_000, device=device)
    a = FF.bce_with_logits(x, 0.9)
    b = FF.bce_with_logits(x, 0.9)
    assert torch.equal(a, b)


def test_loss_module_is_drop_in(backend):
    x, t = torch.randn(8), torch.rand(8)
    assert_close(fastgan.nn.BCEWithLogitsLoss()(x, t), nn.BCEWithLogitsLoss()(x, t), torch.float32)
