"""Gradients of the fused layers, first and second order, by finite differences in fp64.
The compiled layers' backward is C++ (csrc/autograd_layers.cpp) and their double backward is a
separate stock-op formula there; gradgradcheck proves that formula, which gradient penalties
(R1, WGAN-GP) through fused models depend on."""
import pytest
import torch

import fastgan.functional as FF


def _inputs(transposed, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    shape = (3, 4, 3, 3) if transposed else (4, 3, 3, 3)
    w = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).requires_grad_()
    return x, w


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("act,slope", [("leaky_relu", 0.2), ("tanh", 0.0), ("relu", 0.0)])
@pytest.mark.parametrize("training", [True, False])
def test_conv_bn_act_gradgradcheck(backend, transposed, act, slope, training):
    x, w = _inputs(transposed)
    bn_w = torch.linspace(0.5, 1.5, 4, dtype=torch.float64, requires_grad=True)
    bn_b = torch.linspace(-0.3, 0.3, 4, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.linspace(-0.1, 0.1, 4, dtype=torch.float64), torch.linspace(0.8, 1.2, 4, dtype=torch.float64)

    def layer(x, w, bn_w, bn_b):
        # training with momentum 0: the running stats stay put across gradcheck's many calls
        return FF.conv_bn_act(x, w, None, (1, 1), (1, 1), (1, 1), transposed, (0, 0), 1, bn_w, bn_b, rm, rv, None,
                              training, 0.0, 1e-5, act, slope)

    assert torch.autograd.gradcheck(layer, (x, w, bn_w, bn_b))
    assert torch.autograd.gradgradcheck(layer, (x, w, bn_w, bn_b))


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("act,slope", [("leaky_relu", 0.2), ("tanh", 0.0)])
def test_conv_act_gradgradcheck(backend, transposed, act, slope):
    x, w = _inputs(transposed, seed=1)
    bias = torch.linspace(-0.2, 0.2, 4, dtype=torch.float64, requires_grad=True)

    def layer(x, w, bias):
        return FF.conv_act(x, w, bias, (2, 2) if transposed else (1, 1), (1, 1), (1, 1), transposed, (0, 0), 1, act,
                           slope)

    assert torch.autograd.gradcheck(layer, (x, w, bias))
    assert torch.autograd.gradgradcheck(layer, (x, w, bias))
