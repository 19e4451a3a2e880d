"""The fused linear + activation layer (the MLP GAN's): parity with nn.Linear + activation in
fp64 and fp32, first and second derivatives, opcheck, torch.compile, the same errors on both
paths, fuse() recognising Linear -> activation, and the MLP models' tutorial state_dict keys."""
import pytest
import torch
from torch import nn

import fastgan
import fastgan.functional as FF
from fastgan import _backend
from fastgan.fuse import plan
from fastgan.models import MLPDiscriminator, MLPGenerator
from helpers import assert_close

ACTS = [("leaky_relu", 0.2, lambda: nn.LeakyReLU(0.2)), ("relu", 0.0, nn.ReLU), ("tanh", 0.0, nn.Tanh)]
SHAPES = [(6, 5), (2, 3, 5), (5,)]  # (*, in_features), in_features = 5


def stock_and_fused(act_factory, bias=True, dtype=torch.float64):
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Linear(5, 4, bias=bias), act_factory()).to(dtype)
    return stock, fastgan.fuse(stock)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,slope,act", ACTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_stock(backend, name, slope, act, bias, shape, dtype):
    stock, fused = stock_and_fused(act, bias, dtype)
    assert [kind for _, kind, _, _ in plan(list(fused))] == ["linear_act"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64, generator=g).to(dtype).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    expected, actual = stock(x), fused(x2)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert_close(actual, expected, dtype, msg="forward")
    grad = torch.randn(expected.shape, dtype=torch.float64, generator=g).to(dtype)
    e = torch.autograd.grad(expected, [x, *stock.parameters()], grad)
    a = torch.autograd.grad(actual, [x2, *fused.parameters()], grad)
    for what, ai, ei in zip(["input", "weight", "bias"], a, e):
        assert_close(ai, ei, dtype, scale=4.0, msg=f"grad {what}")


@pytest.mark.parametrize("name,slope,act", ACTS)
def test_first_and_second_derivatives(backend, name, slope, act):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    fn = lambda x, w, b: FF.linear_act(x, w, b, name, slope)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_opcheck_and_node():
    g = torch.Generator().manual_seed(3)
    for shape in SHAPES:
        x = torch.randn(*shape, generator=g, requires_grad=True)
        w = torch.randn(4, 5, generator=g, requires_grad=True)
        for b in (torch.randn(4, generator=g, requires_grad=True), None):
            torch.library.opcheck(torch.ops.fastgan.linear_act.default, (x, w, b, "leaky_relu", 0.2))
    out = FF.linear_act(x, w, None, "tanh", 0.0)
    assert out.grad_fn.name() == "fastgan::LinearActBackward"


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_compile_fullgraph_mlp_gan_step():
    torch.manual_seed(0)
    g, d = MLPGenerator(16, (32, 64), (1, 8, 8)), MLPDiscriminator((1, 8, 8), (32, 16))
    z, real = torch.randn(4, 16), torch.rand(4, 1, 8, 8) * 2 - 1

    def losses(g, d, z, real):
        return FF.gan_loss(d(real), d(g(z).detach()), "bce") + FF.gan_loss(None, d(g(z)), "bce")

    expected = losses(g, d, z, real)
    compiled = torch.compile(losses, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(g, d, z, real), expected)


BAD = [
    (lambda: (torch.randn(2, 6), torch.randn(4, 5), None), "expects input with 5 features in its last dimension"),
    (lambda: (torch.randn(2, 5), torch.randn(4, 5, 1), None), "expects a 2-D weight"),
    (lambda: (torch.randn(2, 5), torch.randn(4, 5), torch.randn(3)), "bias has shape (3,) but the weight has 4"),
    (lambda: (torch.randn(2, 5).double(), torch.randn(4, 5), None), "input dtype torch.float64 does not match"),
    (lambda: (torch.randint(0, 3, (2, 5)), torch.randn(4, 5), None), "input must be a floating-point tensor"),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_input_gets_the_same_message_on_both_paths(make, message):
    errors = []
    for name in (["fused"] if _backend.COMPILED else []) + ["reference"]:
        with fastgan.use_backend(name), pytest.raises((ValueError, TypeError)) as info:
            FF.linear_act(*make(), "leaky_relu", 0.2)
        errors.append(str(info.value).splitlines()[0])
        assert message in errors[-1], errors[-1]
        assert "Linear+LeakyReLU" in errors[-1] or "input must be" in errors[-1]
    assert len(set(errors)) == 1, errors


def test_negative_slope_runs_unfused():
    seq = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(-0.1))
    assert [kind for _, kind, _, _ in plan(list(seq))] == ["module", "module"]


def test_mlp_models_load_tutorial_checkpoints():
    """The tutorials' models: Sequential(Linear, LeakyReLU, ..., Linear, Tanh) in `model`, and
    the discriminator ending in Sigmoid."""
    tutorial_g = nn.Sequential(nn.Linear(100, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512), nn.LeakyReLU(0.2),
                               nn.Linear(512, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 784), nn.Tanh())
    tutorial_d = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                               nn.Linear(256, 1), nn.Sigmoid())
    g, d = MLPGenerator(), MLPDiscriminator()
    g.load_state_dict({f"model.{k}": v for k, v in tutorial_g.state_dict().items()})
    d.load_state_dict({f"model.{k}": v for k, v in tutorial_d.state_dict().items()})
    z = torch.randn(3, 100)
    images = g(z)
    assert images.shape == (3, 1, 28, 28)
    torch.testing.assert_close(images.flatten(1), tutorial_g(z), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.sigmoid(d(images)), tutorial_d(images.flatten(1)).view(-1), rtol=1e-5, atol=1e-6)
    assert [k for _, k, _, _ in plan(list(g.model))] == ["linear_act"] * 4
    with pytest.raises(ValueError, match="MLPDiscriminator expects images of shape"):
        d(torch.randn(2, 1, 27, 28))
