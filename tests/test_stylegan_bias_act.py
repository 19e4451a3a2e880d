"""StyleGAN's bias_act (fastgan.stylegan.bias_act, torch.ops.fastgan.stylegan_bias_act): every
activation of NVlabs' table with its defaults, gain and clamp, against the stock composition
of its definition in float64 (forward, gradients of x and b, second order), every dtype's
error against the stock composition's, any dim and memory format, rosinality's
fused_leaky_relu, opcheck, torch.compile, and the same error for bad input on both paths."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastgan import _backend
from fastgan.stylegan import bias_act as ba
from fastgan.stylegan import rosinality
from helpers import rel_err
from test_cpu_capability import capability  # noqa: F401  (fixture)

needs_ext = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
ACTS = sorted(ba.ACTIVATIONS)


def definition(x, b, dim, act, alpha, gain, clamp):
    """NVlabs' published definition, in stock ops, with their defaults."""
    spec = ba.ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else alpha
    gain = spec.def_gain if gain is None else gain
    if b is not None:
        shape = [1] * x.dim()
        shape[dim] = -1
        x = x + b.reshape(shape)
    y = {"linear": lambda v: v, "relu": F.relu, "lrelu": lambda v: F.leaky_relu(v, alpha), "tanh": torch.tanh,
         "sigmoid": torch.sigmoid, "elu": F.elu, "selu": F.selu, "softplus": F.softplus,
         "swish": lambda v: v * torch.sigmoid(v)}[act](x) * gain
    return y if clamp is None else y.clamp(-clamp, clamp)


# (shape, dim, memory format)
LAYOUTS = [((2, 5, 3, 4), 1, torch.contiguous_format), ((2, 5, 3, 4), 1, torch.channels_last),
           ((6, 7), 1, torch.contiguous_format), ((3, 4, 5), 0, torch.contiguous_format),
           ((2, 3, 4, 5), -1, torch.contiguous_format), ((2, 3, 4, 5), 2, torch.channels_last),
           ((5,), 0, torch.contiguous_format)]
LAYOUT_IDS = ["nchw", "nhwc", "linear", "dim0", "last", "nhwc-dim2", "1d"]


def make(shape, dim, fmt, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, dtype=torch.float64, generator=g) * 2).to(dtype)
    if len(shape) == 4:
        x = x.contiguous(memory_format=fmt)
    b = (torch.randn(shape[dim], dtype=torch.float64, generator=g)).to(dtype) if bias else None
    return x, b


@needs_ext
def test_the_compiled_table_is_the_python_one():
    assert _backend._C.stylegan_activations() == {n: (s.def_alpha, s.def_gain) for n, s in
                                                  sorted(ba.ACTIVATIONS.items())}
    assert ba.ACTIVATIONS["lrelu"].def_gain == math.sqrt(2) and ba.ACTIVATIONS["lrelu"].def_alpha == 0.2


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("options", [dict(), dict(alpha=0.1, gain=0.7, clamp=0.8), dict(bias=False, clamp=1.5)],
                         ids=["defaults", "alpha-gain-clamp", "no-bias"])
def test_matches_the_definition_in_float64(backend, act, layout, options):
    shape, dim, fmt = layout
    options = dict(options)
    x, b = make(shape, dim, fmt, bias=options.pop("bias", True))
    kwargs = dict(alpha=options.get("alpha"), gain=options.get("gain"), clamp=options.get("clamp"))
    x.requires_grad_()
    if b is not None:
        b.requires_grad_()
    y = ba.bias_act(x, b, dim=dim, act=act, **kwargs)
    x2 = x.detach().requires_grad_()
    b2 = b.detach().requires_grad_() if b is not None else None
    expected = definition(x2, b2, dim, act, **kwargs)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    if len(shape) == 4 and fmt == torch.channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    inputs, inputs2 = [x] + ([b] if b is not None else []), [x2] + ([b2] if b is not None else [])
    for a, e in zip(torch.autograd.grad(y, inputs, grad), torch.autograd.grad(expected, inputs2, grad)):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11)


@needs_ext
@pytest.mark.parametrize("act", ACTS)
def test_each_instruction_set(capability, act):  # noqa: F811
    for layout in LAYOUTS[:3]:
        x, b = make(*layout, seed=2)
        y = torch.ops.fastgan.stylegan_bias_act(x, b, layout[1], act, 0.2, 1.3, 2.0)
        torch.testing.assert_close(y, definition(x, b, layout[1], act, 0.2, 1.3, 2.0), rtol=1e-12, atol=1e-12)
        grad = torch.randn_like(x)
        x2 = x.detach().requires_grad_()
        (e,) = torch.autograd.grad(definition(x2, b, layout[1], act, 0.2, 1.3, 2.0), x2, grad)
        gx = torch.ops.fastgan.stylegan_bias_act_backward(grad, x, b, layout[1], act, 0.2, 1.3, 2.0)
        torch.testing.assert_close(gx, e, rtol=1e-11, atol=1e-11)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("act", ["lrelu", "swish", "tanh", "softplus", "selu"])
def test_low_precision_error_within_twice_the_stock_composition(dtype, act):
    for shape, dim, fmt in LAYOUTS[:2]:
        x, b = make(shape, dim, fmt, dtype, seed=3)
        exact = definition(x.double(), b.double(), dim, act, None, None, 1.5)
        fused = ba.bias_act(x, b, dim=dim, act=act, clamp=1.5)
        stock = definition(x, b, dim, act, None, None, 1.5)
        assert fused.dtype == dtype
        floor = {torch.float32: 1e-7, torch.float16: 1e-4, torch.bfloat16: 1e-3}[dtype]
        assert rel_err(fused, exact) <= 2 * rel_err(stock, exact) + floor


@pytest.mark.parametrize("act", ["lrelu", "swish", "tanh", "elu", "softplus"])
def test_gradcheck_and_gradgradcheck(backend, act):
    x, b = make((2, 3, 4, 2), 1, torch.contiguous_format, seed=4)
    x, b = x.requires_grad_(), b.requires_grad_()
    fn = lambda x, b: ba.bias_act(x, b, act=act, alpha=0.3, gain=1.7, clamp=3.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_only_bias_requires_grad(backend):
    x, b = make((2, 3, 4, 2), 1, torch.contiguous_format, seed=5)
    b.requires_grad_()
    (gb,) = torch.autograd.grad(ba.bias_act(x, b, act="lrelu").sum(), b)
    b2 = b.detach().requires_grad_()
    (eb,) = torch.autograd.grad(definition(x, b2, 1, "lrelu", None, None, None).sum(), b2)
    torch.testing.assert_close(gb, eb, rtol=1e-12, atol=1e-12)


def test_impl_ref_and_nvlabs_defaults():
    x, b = make((2, 5, 3, 4), 1, torch.contiguous_format, seed=6)
    for act in ACTS:
        torch.testing.assert_close(ba.bias_act(x, b, act=act), ba.bias_act(x, b, act=act, impl="ref"), rtol=1e-12,
                                   atol=1e-12)
    torch.testing.assert_close(ba.bias_act(x), x)  # linear, no bias, gain 1: the identity


def test_rosinality_fused_leaky_relu():
    x, b = make((2, 5, 3, 4), 1, torch.contiguous_format, seed=7)
    expected = F.leaky_relu(x + b[None, :, None, None], 0.1) * 3.0
    torch.testing.assert_close(rosinality.fused_leaky_relu(x, b, 0.1, 3.0), expected)
    torch.testing.assert_close(rosinality.fused_leaky_relu(x), F.leaky_relu(x, 0.2) * 2 ** 0.5)
    layer = rosinality.FusedLeakyReLU(5).double()
    with torch.no_grad():
        layer.bias.copy_(b)
    torch.testing.assert_close(layer(x), F.leaky_relu(x + b[None, :, None, None], 0.2) * 2 ** 0.5)
    assert [n for n, _ in layer.named_parameters()] == ["bias"]
    assert rosinality.FusedLeakyReLU(5, bias=False).bias is None


@needs_ext
def test_opcheck():
    for shape, dim, fmt in LAYOUTS:
        x, b = make(shape, dim, fmt, seed=8)
        for args in ((x, b, dim, "lrelu", 0.2, 1.4, 2.0), (x, None, dim, "swish", 0.0, 1.0, -1.0)):
            torch.library.opcheck(torch.ops.fastgan.stylegan_bias_act.default, args)
        torch.library.opcheck(torch.ops.fastgan.stylegan_bias_act.default,
                              (x.clone().requires_grad_(), b.clone().requires_grad_(), dim, "tanh", 0.0, 1.0, 0.5))
        torch.library.opcheck(torch.ops.fastgan.stylegan_bias_act_backward.default,
                              (torch.randn_like(x), x, b, dim, "elu", 0.0, 1.0, 1.0))


@needs_ext
def test_compile_fullgraph():
    def layer(x, b):
        return ba.bias_act(x, b, act="lrelu", clamp=256)

    x, b = make((2, 5, 3, 4), 1, torch.contiguous_format, seed=9)
    x, b = x.requires_grad_(), b.requires_grad_()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y, expected = compiled(x, b), layer(x, b)
    torch.testing.assert_close(y, expected)
    for a, e in zip(torch.autograd.grad(y.sum(), (x, b)), torch.autograd.grad(expected.sum(), (x, b))):
        torch.testing.assert_close(a, e)


BAD = [
    (lambda: (torch.randn(2, 3).int(), None, 1, "relu"), TypeError, "x must be a floating-point tensor"),
    (lambda: (torch.randn(2, 3), None, 1, "gelu"), ValueError,
     "bias_act: unknown act 'gelu'; expected one of ['elu', 'linear', 'lrelu', 'relu', 'selu', 'sigmoid', "
     "'softplus', 'swish', 'tanh']"),
    (lambda: (torch.randn(2, 3), torch.randn(3), 2, "relu"), IndexError,
     "bias_act: dim 2 is out of range for x of shape (2, 3)"),
    (lambda: (torch.randn(2, 3), torch.randn(4), 1, "relu"), ValueError,
     "bias_act: b must be a 1-D tensor of x.shape[1] = 3 elements, got shape (4,)"),
    (lambda: (torch.randn(2, 3), torch.randn(3, 1), 1, "relu"), ValueError,
     "b must be a 1-D tensor of x.shape[1] = 3 elements, got shape (3, 1)"),
    (lambda: (torch.randn(2, 3), torch.randn(3).double(), 1, "relu"), TypeError,
     "bias_act: b dtype torch.float64 does not match x dtype torch.float32"),
    (lambda: (torch.randn(2, 3), torch.arange(4), 1, "relu"), TypeError, "b must be a floating-point tensor"),
]


@pytest.mark.parametrize("make_args,error,message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_same_error_on_both_paths(backend, make_args, error, message):
    x, b, dim, act = make_args()
    with pytest.raises(error) as info:
        ba.bias_act(x, b, dim=dim, act=act)
    assert message in str(info.value)
    if backend == "fused":
        with pytest.raises(error) as direct:
            torch.ops.fastgan.stylegan_bias_act(x, b, dim, act, 0.0, 1.0, -1.0)
        assert str(direct.value).splitlines()[0] == str(info.value).splitlines()[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_cuda_kernel_matches_the_definition(act, layout):
    shape, dim, fmt = layout
    x, b = make(shape, dim, fmt, seed=10)
    y = torch.ops.fastgan.stylegan_bias_act(x.cuda(), b.cuda(), dim, act, 0.2, 1.3, 2.0)
    torch.testing.assert_close(y.cpu(), definition(x, b, dim, act, 0.2, 1.3, 2.0), rtol=1e-12, atol=1e-12)
    xc, bc = x.cuda().requires_grad_(), b.cuda().requires_grad_()
    grad = torch.randn_like(xc)
    got = torch.autograd.grad(ba.bias_act(xc, bc, dim=dim, act=act, alpha=0.2, gain=1.3, clamp=2.0), (xc, bc), grad)
    x2, b2 = x.detach().requires_grad_(), b.detach().requires_grad_()
    want = torch.autograd.grad(definition(x2, b2, dim, act, 0.2, 1.3, 2.0), (x2, b2), grad.cpu())
    for a, e in zip(got, want):
        torch.testing.assert_close(a.cpu(), e, rtol=1e-11, atol=1e-11)
