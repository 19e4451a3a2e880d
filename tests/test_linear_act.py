"""The fused linear + activation layer (the MLP GAN's): parity with nn.Linear + activation in
fp64 and fp32, first and second derivatives, opcheck, torch.compile, the same errors on both
paths, fuse() recognising Linear -> activation, and the MLP models' tutorial state_dict keys."""
import pytest
import torch
from torch import nn

import fastgan
import fastgan.functional as FF
from fastgan import _backend, reference
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


# The bias + activation kernel on its own (the layer's bias is added there, not by BLAS):
# rows x C shapes that are and are not multiples of the vector widths, one column, enough rows
# for several threads, a 3-D input, a transposed (non-contiguous) one, and no rows at all.
KERNEL_SHAPES = [(6, 4), (7, 13), (9, 1), (3000, 37), (2, 5, 16), (0, 8)]


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name,slope", [("leaky_relu", 0.2), ("relu", 0.0), ("tanh", 0.0), ("identity", 0.0)])
def test_bias_act_kernel_matches_reference(device, shape, dtype, name, slope):
    ops = torch.ops.fastgan
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, dtype=torch.float64, generator=g).to(dtype).to(device)
    b = torch.randn(shape[-1], dtype=torch.float64, generator=g).to(dtype).to(device)
    y = ops.bias_act(x, b, name, slope)
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    assert_close(y, reference.bias_act(x.double(), b.double(), name, slope), dtype, msg="forward")
    grad_out = torch.randn(shape, dtype=torch.float64, generator=g).to(dtype).to(device)
    dx, db = ops.bias_act_backward(grad_out, y, name, slope)
    rdx, rdb = reference.bias_act_backward(grad_out.double(), y.double(), name, slope)
    assert dx.dtype == db.dtype == dtype and db.shape == (shape[-1],)
    assert_close(dx, rdx, dtype, msg="grad input")
    # A sum over up to 3000 rows, rounded once to dtype: the tolerance scales with the row count.
    assert_close(db, rdb, dtype, scale=max(1.0, (dx.numel() // shape[-1]) ** 0.5), msg="grad bias")


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_bias_act_takes_strided_input_and_gives_the_same_bits_for_any_thread_count():
    ops = torch.ops.fastgan
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 3000, generator=g).t()  # (3000, 300), not contiguous: ten column tiles, several tasks
    b = torch.randn(300, generator=g)
    y = ops.bias_act(x, b, "leaky_relu", 0.2)
    assert_close(y, reference.bias_act(x.double(), b.double(), "leaky_relu", 0.2), torch.float32)
    grad_out = torch.randn(300, 3000, generator=g).t()
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(ops.bias_act_backward(grad_out, y, "leaky_relu", 0.2))
    finally:
        torch.set_num_threads(threads)
    for dx, db in results[1:]:
        assert torch.equal(dx, results[0][0]) and torch.equal(db, results[0][1])
    assert_close(results[0][1], reference.bias_act_backward(grad_out.double(), y.double(), "leaky_relu", 0.2)[1],
                 torch.float32, scale=50)


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_bias_act_refuses_a_bias_that_does_not_fit():
    ops = torch.ops.fastgan
    with pytest.raises(ValueError, match=r"bias of shape \(C,\).*got bias of shape \(3,\) and input of shape \(2, 4\)"):
        ops.bias_act(torch.randn(2, 4), torch.randn(3), "relu", 0.0)
    with pytest.raises(TypeError, match="bias dtype torch.float64 does not match input dtype torch.float32"):
        ops.bias_act(torch.randn(2, 4), torch.randn(4, dtype=torch.float64), "relu", 0.0)
    with pytest.raises(ValueError, match="0-D"):
        ops.bias_act_backward(torch.randn(()), torch.randn(()), "relu", 0.0)


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_layer_calls_the_bias_act_kernels():
    """The layer's bias goes through bias_act (forward) and bias_act_backward (grad_bias in the
    same pass), not through the matrix product and a separate sum."""
    x = torch.randn(8, 5, requires_grad=True)
    w = torch.randn(4, 5, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    # The profiler sees the ops a C++ op calls through the dispatcher; a dispatch mode would not.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        FF.linear_act(x, w, b, "leaky_relu", 0.2).sum().backward()
    names = {e.name for e in prof.events()}
    assert {"fastgan::bias_act", "fastgan::bias_act_backward"} <= names, sorted(names)
    assert "aten::addmm" not in names and "fastgan::activation_backward" not in names, sorted(names)


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
