"""Fused BatchNorm + activation against nn.BatchNorm2d + the stock activation: forward,
every gradient, running statistics and num_batches_tracked, eval mode, layouts, dtypes."""
import pytest
import torch
from torch import nn

import fastgan.functional as FF
from helpers import assert_close, randomise_bn, stock_activation, twin

SHAPES = [(2, 3, 5, 7), (4, 8, 4, 4), (3, 5, 1, 1), (2, 16, 9, 3), (1, 7, 3, 3), (5, 1, 6, 2),
          # The CPU reductions' run boundaries: two runs of 4x4 planes, planes wider than the
          # 64 lane accumulators, planes longer than one run.
          (300, 2, 4, 4), (3, 2, 9, 9), (2, 2, 70, 70)]
ACTS = [("relu", 0.0), ("leaky_relu", 0.2), ("identity", 0.0), ("tanh", 0.0), ("leaky_relu", -0.5),
        ("sigmoid", 0.0)]


def run_fused(x, bn, act, slope):
    return FF.batch_norm_act(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, bn.momentum,
                             bn.eps, act, slope, bn.num_batches_tracked)


def make_input(shape, dtype, device, layout, generator, mean=0.0):
    x = (torch.randn(shape, dtype=torch.float64, generator=generator) * 1.5 + mean).to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous view
        x = torch.cat([x, x], dim=3)[..., ::2]
    return x


def compare(backend, device, dtype, shape, act, slope, layout, training=True, momentum=0.1, affine=True,
            track=True, steps=3, seed=0, mean=0.0):
    g = torch.Generator().manual_seed(seed)
    stock_bn = nn.BatchNorm2d(shape[1], momentum=momentum, affine=affine, track_running_stats=track).to(device)
    if affine or track:
        randomise_bn(stock_bn, g)
    stock_bn = stock_bn.to(dtype if dtype == torch.float64 else torch.float32)
    fused_bn = twin(stock_bn)
    stock_bn.train(training)
    fused_bn.train(training)
    stock_act = stock_activation(act, slope)
    for step in range(steps):
        x = make_input(shape, dtype, device, layout, g, mean).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        expected = stock_act(stock_bn(x))
        actual = run_fused(x2, fused_bn, act, slope)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        if layout == "channels_last":
            assert actual.is_contiguous(memory_format=torch.channels_last)
        assert_close(actual, expected, dtype, msg=f"forward, step {step}")
        grad = torch.randn(expected.shape, dtype=torch.float64, generator=g).to(device=device, dtype=dtype)
        params = [p for p in (stock_bn.weight, stock_bn.bias) if p is not None]
        fparams = [p for p in (fused_bn.weight, fused_bn.bias) if p is not None]
        expected_grads = torch.autograd.grad(expected, [x] + params, grad)
        actual_grads = torch.autograd.grad(actual, [x2] + fparams, grad)
        for name, a, e in zip(["input", "weight", "bias"], actual_grads, expected_grads):
            scale = 4.0 if name != "input" else 2.0  # sums over N*H*W elements
            assert_close(a, e, dtype, scale=scale, msg=f"grad {name}, step {step}")
        if track:
            stats_dtype = torch.float32 if dtype != torch.float64 else dtype
            assert_close(fused_bn.running_mean, stock_bn.running_mean, stats_dtype)
            assert_close(fused_bn.running_var, stock_bn.running_var, stats_dtype)
            assert int(fused_bn.num_batches_tracked) == int(stock_bn.num_batches_tracked)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act,slope", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_fp64_training_matches_stock(backend, shape, act, slope, layout):
    compare(backend, "cpu", torch.float64, shape, act, slope, layout)


@pytest.mark.parametrize("shape", SHAPES[:4])
@pytest.mark.parametrize("act,slope", ACTS[:2])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reduced_precision_matches_stock(backend, device, shape, act, slope, layout, dtype):
    if device == "cpu" and dtype != torch.float32 and backend == "reference":
        pytest.skip("stock CPU BatchNorm in half precision is the reference itself")
    compare(backend, device, dtype, shape, act, slope, layout)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fp64_on_device(backend, device, layout):
    compare(backend, device, torch.float64, (4, 6, 5, 3), "leaky_relu", 0.2, layout)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("affine", [True, False])
def test_momentum_and_affine(backend, device, momentum, affine):
    compare(backend, device, torch.float64, (3, 4, 3, 5), "relu", 0.0, "contiguous", momentum=momentum, affine=affine,
            steps=4)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_eval_mode_uses_running_stats(backend, device, layout):
    compare(backend, device, torch.float64, (4, 6, 5, 3), "relu", 0.0, layout, training=False, steps=2)


@pytest.mark.parametrize("training", [True, False])
def test_no_running_stats(backend, device, training):
    compare(backend, device, torch.float64, (4, 6, 5, 3), "leaky_relu", 0.2, "contiguous", training=training,
            track=False)


# Planes smaller than a reduction run (several planes per run), one run each, and larger
# (a run is a slice of a plane).
@pytest.mark.parametrize("shape", [(64, 4, 4, 4), (8, 4, 16, 16), (2, 4, 80, 80)])
def test_large_mean_statistics_stay_accurate(backend, device, shape):
    """Inputs of 1e3 +- 1 in fp32: a naive E[x^2] - E[x]^2 loses every digit of the variance."""
    g = torch.Generator().manual_seed(1)
    x64 = torch.randn(*shape, dtype=torch.float64, generator=g) + 1e3
    bn = nn.BatchNorm2d(4).to(device)
    out = run_fused(x64.float().to(device), bn, "identity", 0.0)
    ref = nn.BatchNorm2d(4).double()(x64)
    assert (out.double().cpu() - ref).abs().max() < 2e-3
    true_var = x64.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_var.double().cpu(), 0.9 + 0.1 * true_var, rtol=1e-4, atol=0)


def test_one_value_per_channel_raises_like_stock(backend, device):
    bn = nn.BatchNorm2d(3).to(device)
    x = torch.randn(1, 3, 1, 1, device=device)
    with pytest.raises(ValueError) as stock:
        bn(x)
    with pytest.raises(ValueError) as fused:
        run_fused(x, bn, "relu", 0.0)
    assert str(fused.value) == str(stock.value)


def test_nan_propagates_like_stock(backend, device):
    x = torch.randn(4, 3, 5, 5, device=device)
    x[0, 1, 2, 2] = float("nan")
    bn, bn2 = nn.BatchNorm2d(3).to(device), nn.BatchNorm2d(3).to(device)
    expected = torch.relu(bn(x))
    actual = run_fused(x, bn2, "relu", 0.0)
    assert torch.equal(torch.isnan(actual), torch.isnan(expected))
    assert torch.equal(torch.isnan(bn.running_mean), torch.isnan(bn2.running_mean))


@pytest.mark.parametrize("act,slope", [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(backend, act, slope, training):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.rand(4, dtype=torch.float64, generator=g).add(0.5).requires_grad_()
    b = torch.randn(4, dtype=torch.float64, generator=g).requires_grad_()
    rm, rv = torch.randn(4, dtype=torch.float64, generator=g), torch.rand(4, dtype=torch.float64, generator=g) + 0.5

    def f(x, w, b):
        return FF.batch_norm_act(x, None if training else rm, None if training else rv, w, b, training, 0.1, 1e-5,
                                 act, slope)

    assert torch.autograd.gradcheck(f, (x, w, b))
    # Double backward (gradient penalties): the second derivative must be right too.
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_deterministic(backend, device, layout):
    x = make_input((8, 16, 12, 12), torch.float32, device, layout, torch.Generator().manual_seed(3))
    results = []
    for _ in range(2):
        bn = nn.BatchNorm2d(16).to(device)
        xi = x.clone().requires_grad_()
        y = run_fused(xi, bn, "relu", 0.0)
        (gx,) = torch.autograd.grad(y, xi, torch.ones_like(y))
        results.append((y, gx, bn.running_var.clone()))
    for a, b in zip(*results):
        assert torch.equal(a, b)
