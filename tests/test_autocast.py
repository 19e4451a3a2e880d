"""The fused layers under CPU autocast (bf16): the convolution runs in bf16, as stock
autocast runs it, and the BatchNorm and activation run on its bf16 output with float
arithmetic. Outputs, gradients and running statistics match stock autocast's within bf16
tolerance, and are no further from the fp64 result than stock autocast's are."""
import copy

import pytest
import torch

import fastgan
from fastgan import nn as fnn
from helpers import randomise_bn, rel_err

pytestmark = pytest.mark.skipif(not fastgan._backend.COMPILED, reason="needs fastgan._C")

LAYERS = {  # name: (layer, input shape)
    "convT+bn+relu": (lambda: fnn.ConvTranspose2dBNReLU(16, 8, 4, 2, 1), (6, 16, 8, 8)),
    "conv+bn+leaky_relu": (lambda: fnn.Conv2dBNLeakyReLU(8, 16, 4, 2, 1), (6, 8, 16, 16)),
    "conv+leaky_relu": (lambda: fnn.Conv2dLeakyReLU(3, 8, 4, 2, 1), (6, 3, 16, 16)),
    "convT+tanh": (lambda: fnn.ConvTranspose2dTanh(8, 3, 4, 2, 1), (6, 8, 8, 8)),
    "linear+leaky_relu": (lambda: fnn.LinearLeakyReLU(40, 24), (6, 40)),
    "linear+tanh": (lambda: fnn.LinearTanh(40, 24), (6, 40)),
}


def forward_backward(layer, x, weights, autocast):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y = layer(x)
    (y.double() * weights).sum().backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    buffers = [b for b in layer.buffers() if b.is_floating_point()]
    return y, grads, buffers


@pytest.mark.parametrize("name,channels_last", [(name, cl) for name, (_, shape) in LAYERS.items()
                                                 for cl in (False, True) if len(shape) == 4 or not cl])
def test_fused_layers_under_cpu_autocast_match_stock_autocast(name, channels_last):
    build, shape = LAYERS[name]
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    fused = build().train()
    for m in fused.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            randomise_bn(m, g)
    stock = fastgan.unfuse(copy.deepcopy(fused))
    exact = copy.deepcopy(stock).double()
    x = torch.randn(shape, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fused, stock, exact = (m.to(memory_format=torch.channels_last) for m in (fused, stock, exact))
    # The output's shape from a copy: a forward of `exact` itself would move its running statistics
    # once more than the other two layers', and the buffers' fp64 comparison would mean nothing.
    weights = torch.randn(copy.deepcopy(exact)(x.double()).shape, generator=g, dtype=torch.float64)
    with fastgan.use_backend("fused"):
        y_f, grads_f, buf_f = forward_backward(fused, x, weights, autocast=True)
    y_s, grads_s, buf_s = forward_backward(stock, x, weights, autocast=True)
    y_e, grads_e, buf_e = forward_backward(exact, x.double(), weights, autocast=False)

    assert y_f.dtype == y_s.dtype == torch.bfloat16
    if channels_last:
        assert y_f.is_contiguous(memory_format=torch.channels_last)
    pairs = [("output", y_f, y_s, y_e)] + [(f"grad {i}", *t) for i, t in enumerate(zip(grads_f, grads_s, grads_e))]
    pairs += [(f"buffer {i}", *t) for i, t in enumerate(zip(buf_f, buf_s, buf_e))]
    for what, f, s, e in pairs:
        assert f.dtype == s.dtype, what
        assert rel_err(f, s) < 2e-2, f"{what}: {rel_err(f, s):.3g} from stock autocast"
        # bf16 keeps 8 bits: the fused path may round in other places than stock, not more often
        assert rel_err(f, e) <= 1.5 * rel_err(s, e) + 2e-3, \
            f"{what}: {rel_err(f, e):.3g} from fp64, stock autocast {rel_err(s, e):.3g}"
