"""StyleGAN3's filtered_lrelu (fastgan.stylegan.filtered_lrelu, torch.ops.fastgan.filtered_lrelu):
against its definition summed tap by tap in float64 (test_upfirdn2d.py's brute force around a
stock leaky ReLU), gradients of x and b, second order, every dtype's error against the stock
composition's, both layouts, the 2-bit record, opcheck, torch.compile, and the same error for
bad input on both paths."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastgan import _backend
from fastgan.stylegan import filtered_lrelu as fl
from helpers import rel_err
from test_cpu_capability import capability  # noqa: F401  (fixture)
from test_upfirdn2d import assert_layout_kept, brute_force

needs_ext = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")


def definition(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """NVlabs' published steps: bias, upfirdn2d up (gain up^2), leaky ReLU * gain, clamp,
    upfirdn2d down."""
    if b is not None:
        x = x + b[None, :, None, None]
    z = brute_force(x, fu, [up, up], [1, 1], padding, flip_filter, up * up)
    a = F.leaky_relu(z, slope) * gain
    if clamp is not None:
        a = a.clamp(-clamp, clamp)
    return brute_force(a, fd, [1, 1], [down, down], [0, 0, 0, 0], flip_filter, 1.0)


# (x shape, fu shape, fd shape, up, down, padding, gain, slope, clamp, flip_filter, bias)
CASES = [
    ((2, 3, 8, 8), (6,), (6,), 2, 2, [5, 4, 5, 4], math.sqrt(2), 0.2, 1.0, False, True),  # StyleGAN3's 2x
    ((1, 4, 6, 7), (4, 4), (3, 3), 1, 1, [2, 2, 2, 2], 1.3, 0.1, None, True, True),  # critically sampled
    ((2, 2, 5, 5), (8,), (4,), 4, 2, [7, 6, 6, 7], 1.0, 0.3, 0.5, False, False),  # up 4, no bias
    ((1, 3, 9, 6), (2, 3), (5,), 2, 1, [-1, 3, 0, 2], 2.0, 0.2, None, False, True),  # 2-D fu, crops
    ((2, 5, 4, 4), (1,), (1,), 1, 1, [0, 0, 0, 0], 1.0, 0.0, 0.2, False, True),  # bias_act alone
]
IDS = ["sg3-2x", "critical", "up4", "2d-crop", "identity"]


def inputs(case, dtype=torch.float64, layout=torch.contiguous_format, seed=0):
    shape, fus, fds, up, down, padding, gain, slope, clamp, flip, bias = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=g).to(dtype).contiguous(memory_format=layout)
    fu = torch.rand(fus, dtype=torch.float64, generator=g) + 0.1
    fd = torch.rand(fds, dtype=torch.float64, generator=g) + 0.1
    b = torch.randn(shape[1], dtype=torch.float64, generator=g).to(dtype) if bias else None
    return x, fu, fd, b, dict(up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp,
                              flip_filter=flip)


def call_definition(x, fu, fd, b, kw):
    return definition(x, fu, fd, b, kw["up"], kw["down"], kw["padding"], kw["gain"], kw["slope"], kw["clamp"],
                      kw["flip_filter"])


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_the_definition_in_float64(backend, case, layout):
    x, fu, fd, b, kw = inputs(case, layout=layout)
    x.requires_grad_()
    if b is not None:
        b.requires_grad_()
    y = fl.filtered_lrelu(x, fu, fd, b, **kw)
    x2 = x.detach().requires_grad_()
    b2 = b.detach().requires_grad_() if b is not None else None
    expected = call_definition(x2, fu, fd, b2, kw)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    assert_layout_kept(y, x)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    wrt, wrt2 = [x] + ([b] if b is not None else []), [x2] + ([b2] if b is not None else [])
    got, want = torch.autograd.grad(y, wrt, grad), torch.autograd.grad(expected, wrt2, grad)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11)
    if backend == "fused":  # the reference's gradient layout is stock autograd's choice
        assert_layout_kept(got[0], x)


@needs_ext
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_planes_in_batches_on_the_cpu(layout):
    """On the CPU the op runs its planes in batches whose upsampled signal is about 8 MiB
    (args/filtered_lrelu.h), forward and backward: here 256 planes of 73 x 73 float64 (10.9 MiB)
    go in two batches. Output, record and gradients equal the reference's and the record of
    the whole signal at once."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 64, 32, 32, dtype=torch.float64, generator=g).contiguous(memory_format=layout)
    fu, fd = torch.rand(12, dtype=torch.float64, generator=g) + 0.1, torch.rand(12, dtype=torch.float64, generator=g)
    b = torch.randn(64, dtype=torch.float64, generator=g)
    kw = dict(up=2, down=2, padding=[10, 10, 10, 10], gain=math.sqrt(2), slope=0.2, clamp=2.0)
    assert 4 * 64 * 73 * 73 * 8 > (8 << 20)  # more than one batch
    x.requires_grad_(), b.requires_grad_()
    y = fl.filtered_lrelu(x, fu, fd, b, **kw)
    expected = fl.filtered_lrelu(x, fu, fd, b, impl="ref", **kw)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    assert_layout_kept(y, x)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=g)
    for got, want in zip(torch.autograd.grad(y, (x, b), grad), torch.autograd.grad(expected, (x, b), grad)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)
    with torch.no_grad():
        _, record = torch.ops.fastgan.filtered_lrelu(x, fu, fd, b, 2, 2, [10, 10, 10, 10], kw["gain"], 0.2, 2.0, False)
        z = torch.ops.fastgan.upfirdn2d(x.contiguous() + b[None, :, None, None], fu, [2, 2], [1, 1], [10] * 4, False,
                                        4.0)
        assert torch.equal(record, torch.ops.fastgan.filtered_lrelu_act(z, kw["gain"], 0.2, 2.0)[1])


@needs_ext
def test_each_instruction_set_and_the_record(capability):  # noqa: F811
    x, fu, fd, b, kw = inputs(CASES[0], seed=2)
    out, sign = torch.ops.fastgan.filtered_lrelu(x, fu, fd, b, kw["up"], kw["down"], kw["padding"], kw["gain"],
                                                 kw["slope"], kw["clamp"], kw["flip_filter"])
    torch.testing.assert_close(out, call_definition(x, fu, fd, b, kw), rtol=1e-12, atol=1e-12)
    # The record: 2 bits per element of the 20 x 20 upsampled signal, 4 to a byte along rows.
    assert sign.dtype == torch.uint8 and sign.shape == (2, 3, 20, 5)
    z = brute_force(x + b[None, :, None, None], fu, [2, 2], [1, 1], kw["padding"], False, 4.0)
    a = F.leaky_relu(z, 0.2) * kw["gain"]
    codes = torch.where(a.abs() > kw["clamp"], 2, torch.where(z > 0, 0, 1))
    unpacked = torch.stack([(sign >> (2 * k)) & 3 for k in range(4)], -1).flatten(-2)[..., :20]
    assert torch.equal(unpacked.long(), codes)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_low_precision_error_within_twice_the_stock_composition(case, dtype):
    x, fu, fd, b, kw = inputs(case, dtype, seed=3)
    exact = call_definition(x.double(), fu, fd, b.double() if b is not None else None, kw)
    fused = fl.filtered_lrelu(x, fu.float(), fd.float(), b, **kw)
    try:
        stock = fl.filtered_lrelu(x, fu.float(), fd.float(), b, **kw, impl="ref")
    except RuntimeError:  # no CPU convolution for this dtype in this torch: float32, rounded
        stock = fl.filtered_lrelu(x.float(), fu.float(), fd.float(), b.float() if b is not None else None, **kw,
                                  impl="ref").to(dtype)
    assert fused.dtype == dtype
    floor = {torch.float32: 1e-7, torch.float16: 1e-4, torch.bfloat16: 1e-3}[dtype]
    assert rel_err(fused, exact) <= 2 * rel_err(stock, exact) + floor


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=["sg3-2x", "2d-crop"])
def test_gradcheck_and_gradgradcheck(backend, case):
    x, fu, fd, b, kw = inputs(case, seed=4)
    kw["clamp"] = None  # the clamp's kink makes finite differences straddle it
    x, b = x[:1, :2].clone().requires_grad_(), b[:2].clone().requires_grad_()
    fn = lambda x, b: fl.filtered_lrelu(x, fu, fd, b, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@needs_ext
def test_opcheck():
    for case in (CASES[0], CASES[3]):
        for layout in (torch.contiguous_format, torch.channels_last):
            x, fu, fd, b, kw = inputs(case, layout=layout)
            args = (x, fu, fd, b, kw["up"], kw["down"], kw["padding"], kw["gain"], kw["slope"],
                    -1.0 if kw["clamp"] is None else kw["clamp"], kw["flip_filter"])
            torch.library.opcheck(torch.ops.fastgan.filtered_lrelu.default, args)
            torch.library.opcheck(torch.ops.fastgan.filtered_lrelu.default,
                                  (x.clone().requires_grad_(), *args[1:3], b.clone().requires_grad_(), *args[4:]))
    z = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastgan.filtered_lrelu_act.default, (z, 1.4, 0.2, 0.5))
    sign = torch.ops.fastgan.filtered_lrelu_act(z, 1.4, 0.2, 0.5)[1]
    torch.library.opcheck(torch.ops.fastgan.filtered_lrelu_act_backward.default, (torch.randn_like(z), sign, 1.4, 0.2))


@needs_ext
def test_compile_fullgraph():
    x, fu, fd, b, kw = inputs(CASES[0], seed=5)
    x, b = x.requires_grad_(), b.requires_grad_()

    def layer(x, b):
        return fl.filtered_lrelu(x, fu, fd, b, **kw)

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y, expected = compiled(x, b), layer(x, b)
    torch.testing.assert_close(y, expected)
    for a, e in zip(torch.autograd.grad(y.sum(), (x, b)), torch.autograd.grad(expected.sum(), (x, b))):
        torch.testing.assert_close(a, e)


BAD = [
    (lambda: (torch.randn(3, 4, 4), None, None, None, 1, 1, 0), ValueError,
     "filtered_lrelu expects a 4-D x (N, C, H, W), got a 3-D tensor of shape (3, 4, 4)"),
    (lambda: (torch.randn(1, 2, 4, 4), torch.ones(2, 2, 2), None, None, 1, 1, 0), ValueError,
     "filtered_lrelu expects fu of shape (taps,) (separable) or (height, width) with at least one tap, got shape "
     "(2, 2, 2)"),
    (lambda: (torch.randn(1, 2, 4, 4), None, torch.ones(0), None, 1, 1, 0), ValueError,
     "filtered_lrelu expects fd of shape (taps,) (separable) or (height, width) with at least one tap, got shape (0,)"),
    (lambda: (torch.randn(1, 2, 4, 4), None, None, torch.ones(3), 1, 1, 0), ValueError,
     "filtered_lrelu: b must be a 1-D tensor of x.shape[1] = 2 elements, got shape (3,)"),
    (lambda: (torch.randn(1, 2, 4, 4), None, None, None, 0, 1, 0), ValueError,
     "filtered_lrelu: up and down must be integers >= 1, got up 0 and down 1"),
    (lambda: (torch.randn(1, 2, 4, 4), torch.ones(4), torch.ones(4), None, 1, 1, 0), ValueError,
     "filtered_lrelu: x of shape (1, 2, 4, 4) with up 1, down 1, padding [0, 0, 0, 0], fu of shape (4,) and fd of "
     "shape (4,) leaves no output"),
    (lambda: (torch.randn(1, 2, 4, 4), torch.ones(2, 2, dtype=torch.int32), None, None, 1, 1, 0), TypeError,
     "fu must be a floating-point tensor"),
    (lambda: (torch.randn(1, 2, 4, 4), None, None, None, 1 << 28, 1, 0), ValueError,
     "filtered_lrelu: the upsampled, padded input must stay below 2^30 samples per axis"),
]


@pytest.mark.parametrize("make,error,message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_same_error_on_both_paths(backend, make, error, message):
    x, fu, fd, b, up, down, padding = make()
    with pytest.raises(error) as info:
        fl.filtered_lrelu(x, fu, fd, b, up, down, padding)
    assert message in str(info.value)


def test_filters_requiring_grad_are_refused(backend):
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    with pytest.raises(NotImplementedError, match="the filters get no gradient"):
        fl.filtered_lrelu(x, torch.ones(2, 2, requires_grad=True), None, padding=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cuda_kernels_match_the_definition(case):
    x, fu, fd, b, kw = inputs(case, seed=6)
    xc = x.cuda().requires_grad_()
    bc = b.cuda().requires_grad_() if b is not None else None
    y = fl.filtered_lrelu(xc, fu.cuda(), fd.cuda(), bc, **kw)
    torch.testing.assert_close(y.cpu(), call_definition(x, fu, fd, b, kw), rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, xc, grad)
    x2 = x.detach().requires_grad_()
    (ex,) = torch.autograd.grad(call_definition(x2, fu, fd, b, kw), x2, grad.cpu())
    torch.testing.assert_close(gx.cpu(), ex, rtol=1e-11, atol=1e-11)
