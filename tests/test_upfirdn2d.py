"""StyleGAN's upfirdn2d (fastgan.stylegan.upfirdn2d, torch.ops.fastgan.upfirdn2d): the op and the
reference against a brute-force sum written from the definition in float64, every dtype's error
against that of the stock-op reference, gradients of first and second order, NVlabs' helpers
(setup_filter, filter2d, upsample2d, downsample2d) against the stock ops they must equal, the
rosinality API, opcheck, torch.compile, and the same error for bad input on both paths."""
import pytest
import torch
import torch.nn.functional as F

import fastgan
from fastgan import _backend, reference
from fastgan.stylegan import rosinality
from fastgan.stylegan import upfirdn2d as fir
from helpers import rel_err
from test_cpu_capability import capability  # noqa: F401  (fixture)

COMPILED = _backend.COMPILED
needs_ext = pytest.mark.skipif(not COMPILED, reason="needs fastgan._C")


def brute_force(x, f, up, down, padding, flip_filter, gain):
    """The definition, summed tap by tap in float64: U = x with up - 1 zeros after each sample,
    P = U padded (negative: cropped), out = gain * sum over taps of F[ky, kx] * P shifted by
    (ky, kx), every down-th sample; F = f flipped unless flip_filter (a 1-D f is its outer
    product)."""
    x, f = x.double(), f.double()
    if f.dim() == 1:
        f = torch.outer(f, f)
    n, c, h, w = x.shape
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    u = x.new_zeros(n, c, h * uy, w * ux)
    u[:, :, ::uy, ::ux] = x
    p = x.new_zeros(n, c, h * uy + max(py0, 0) + max(py1, 0), w * ux + max(px0, 0) + max(px1, 0))
    p[:, :, max(py0, 0):max(py0, 0) + h * uy, max(px0, 0):max(px0, 0) + w * ux] = u
    p = p[:, :, max(-py0, 0):p.shape[2] - max(-py1, 0), max(-px0, 0):p.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    out_h, out_w = (p.shape[2] - fh) // dy + 1, (p.shape[3] - fw) // dx + 1
    corr = f if flip_filter else f.flip([0, 1])
    out = x.new_zeros(n, c, out_h, out_w)
    for ky in range(fh):
        for kx in range(fw):
            out += corr[ky, kx] * p[:, :, ky:ky + (out_h - 1) * dy + 1:dy, kx:kx + (out_w - 1) * dx + 1:dx]
    return out * gain


# (input shape, filter shape, up, down, padding [x0, x1, y0, y1], flip_filter, gain)
CASES = [
    ((2, 3, 5, 7), (4, 4), [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0),   # StyleGAN2's upsample2d
    ((2, 3, 8, 6), (4,), [1, 1], [2, 2], [1, 1, 1, 1], False, 1.0),     # separable downsample2d
    ((1, 2, 6, 5), (3, 5), [1, 2], [2, 1], [-1, 3, 2, -2], True, 0.5),  # per axis, cropping
    ((2, 2, 4, 4), (1, 1), [1, 1], [1, 1], [0, 0, 0, 0], False, 1.0),   # identity
    ((1, 3, 7, 9), (8,), [4, 4], [1, 1], [4, 3, 4, 3], False, 16.0),    # StyleGAN3-style x4
    ((1, 1, 5, 5), (2, 3), [3, 1], [2, 3], [0, 2, 1, 0], False, 2.0),   # up 3 / down 2: stride-3 runs
    ((2, 3, 1, 1), (4, 4), [2, 2], [1, 1], [2, 1, 2, 1], True, 1.0),    # a 1 x 1 image
    ((1, 2, 9, 9), (2, 2), [1, 1], [3, 3], [0, 0, 0, 0], False, 1.0),   # down larger than the filter
    ((2, 3, 4, 6), (3, 3), [1, 1], [1, 1], [-2, -1, 0, -1], False, 1.0),  # crops only
    ((1, 17, 6, 4), (4, 4), [2, 2], [2, 2], [1, 2, 2, 1], False, 1.0),  # up and down: many channels
    # Larger planes: most of the cases above have at most 64 pixels in and out, which the CPU
    # runs as lanes of 32 planes; these take its plane loops (up to 64 Ki scratch elements) or,
    # with cropping or up and down together, its row loop.
    ((1, 2, 130, 140), (4, 4), [1, 1], [2, 2], [1, 1, 1, 1], False, 1.0),  # downsample2d, large
    ((1, 1, 70, 90), (4, 4), [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0),    # upsample2d, large
    ((1, 2, 10, 12), (5, 3), [3, 2], [1, 1], [0, 4, 3, 1], True, 1.0),     # up 3 x 2, uneven padding
    ((1, 2, 12, 11), (3, 5), [1, 2], [2, 1], [-1, 3, 2, -2], True, 0.5),   # row loop: cropping
    ((1, 2, 20, 24), (4, 4), [2, 2], [2, 2], [1, 2, 2, 1], False, 1.0),    # row loop: up and down
]
IDS = [f"case{i}" for i in range(len(CASES))]


def assert_layout_kept(y, x):
    """channels_last in, channels_last out (a tensor dense in both layouts counts as NCHW)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last)
    else:
        assert y.is_contiguous()


def inputs(case, dtype=torch.float64, layout=torch.contiguous_format, seed=0):
    shape, fshape, up, down, padding, flip, gain = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=g).to(dtype).contiguous(memory_format=layout)
    f = torch.rand(fshape, dtype=torch.float64, generator=g) + 0.1
    return x, f, up, down, padding, flip, gain


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_is_the_definition(case):
    x, f, *args = inputs(case)
    torch.testing.assert_close(reference.upfirdn2d(x, f, *args), brute_force(x, f, *args), rtol=1e-12, atol=1e-12)


@needs_ext
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_op_is_the_definition_in_float64(capability, case, layout):  # noqa: F811
    x, f, *args = inputs(case, layout=layout)
    expected = brute_force(x, f, *args)
    for y in (torch.ops.fastgan.upfirdn2d(x, f, *args), _backend._C.upfirdn2d(x, f, *args)):
        torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
        assert_layout_kept(y, x)


# Filters that are an outer product (StyleGAN's: setup_filter expands a filter of under 8 taps):
# without upsampling the CPU sums them as a row pass and a column pass, in NCHW over a batch of
# planes at a time, in channels_last a column pass per output row then a row pass whose interior
# pixels are one flat loop (the edges, cropping and downsampling take it pixel by pixel).
RANK_ONE_CASES = [
    ((2, 3, 16, 16), [1, 1], [2, 1, 2, 1], False, 4.0),   # StyleGAN2's blur
    ((2, 3, 16, 12), [2, 2], [1, 1, 1, 1], False, 1.0),   # downsample2d
    ((1, 2, 11, 13), [3, 2], [0, 2, 1, 3], True, 0.5),    # per-axis down, uneven padding
    ((2, 64, 16, 16), [2, 2], [1, 1, 1, 1], False, 1.0),  # planes in several batches per scratch
    ((1, 37, 9, 10), [1, 2], [-1, 2, 2, -1], False, 1.0),  # cropping; channels no multiple of 8
    ((2, 40, 7, 45), [1, 1], [3, 3, 0, 0], True, 1.0),    # wide rows: long interior, wide edges
]
RANK_ONE_TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


@needs_ext
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", list(RANK_ONE_TOLERANCE), ids=str)
@pytest.mark.parametrize("case", RANK_ONE_CASES, ids=["blur", "down2", "down3x2", "many-planes", "crop", "wide"])
def test_rank_one_filter_in_two_passes(capability, case, dtype, layout):  # noqa: F811
    shape, down, padding, flip, gain = case
    g = torch.Generator().manual_seed(5)
    # Rounded to dtype first, so that the expected value is exact for the input the op sees.
    x = torch.randn(shape, dtype=torch.float64, generator=g).to(dtype).double()
    col, row = torch.rand(4, dtype=torch.float64, generator=g) + 0.1, torch.rand(3, dtype=torch.float64, generator=g)
    tol = RANK_ONE_TOLERANCE[dtype]
    for f in (torch.outer(col, row + 0.1), fir.setup_filter([1, 3, 3, 1]).double()):
        f = f.to(dtype).double()
        expected = brute_force(x, f, [1, 1], down, padding, flip, gain)
        xd = x.to(dtype).contiguous(memory_format=layout)
        y = torch.ops.fastgan.upfirdn2d(xd, f.to(dtype), [1, 1], down, padding, flip, gain)
        assert_layout_kept(y, xd)
        torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol * expected.abs().max().item())
    # One tap off the outer product by one part in a million: not factored (in float64 the two
    # passes would be off by about that much, far past the tolerance).
    if dtype == torch.float64:
        f = torch.outer(col, row + 0.1)
        f[1, 2] *= 1 + 1e-6
        y = torch.ops.fastgan.upfirdn2d(x.contiguous(memory_format=layout), f, [1, 1], down, padding, flip, gain)
        torch.testing.assert_close(y, brute_force(x, f, [1, 1], down, padding, flip, gain), rtol=1e-12, atol=1e-12)


# The CPU's small-plane loops write each scratch's zero padding once and then only the samples of
# each plane: many planes of random data (several scratch batches, the last one partial) show
# that no sample lands in the padding or another phase row, including where the input has
# columns no output reads (left out of the scratch) and where up and down differ per axis.
# Planes too large for one scratch without upsampling go in bands of output rows (the bands
# cases: two and three bands). Planes of at most 64 pixels in and out go as lanes, 32 planes
# side by side: the last cases (a plane count no multiple of 32, cropping, up and down at once).
PLANE_LOOP_CASES = [
    ((3, 50, 16, 16), (4, 4), [1, 1], [2, 2], [1, 1, 1, 1]),  # downsample2d: 150 planes
    ((2, 40, 10, 11), (2, 3), [1, 1], [3, 2], [0, 0, 2, 3]),  # down 3 x 2: unread columns, bottom padding
    ((1, 30, 9, 7), (3, 2), [1, 1], [2, 3], [1, 2, 0, 1]),    # odd sizes, uneven padding
    ((3, 50, 8, 8), (4, 4), [2, 2], [1, 1], [2, 1, 2, 1]),    # upsample2d
    ((1, 30, 7, 9), (5, 3), [3, 2], [1, 1], [0, 4, 3, 1]),    # up 3 x 2, uneven padding
    ((1, 3, 300, 90), (4, 4), [1, 1], [1, 1], [1, 2, 1, 2]),  # a blur of planes in bands of rows
    ((1, 2, 301, 290), (4, 3), [1, 1], [2, 3], [1, 2, 2, 1]),  # downsampling in bands, odd sizes
    ((3, 25, 8, 8), (4, 4), [1, 1], [2, 2], [1, 1, 1, 1]),    # lanes: downsample2d at 8 px, 75 planes
    ((2, 21, 4, 4), (4, 4), [2, 2], [1, 1], [2, 1, 2, 1]),    # lanes: upsample2d at 4 px
    ((1, 33, 5, 7), (3, 2), [2, 1], [1, 2], [-1, 2, 1, -1]),  # lanes: cropping, up and down at once
]


@needs_ext
@pytest.mark.parametrize("case", PLANE_LOOP_CASES, ids=["down2", "down3x2", "down2x3-odd", "up2", "up3x2", "bands-blur",
                                                      "bands-down", "lanes-down2", "lanes-up2", "lanes-crop"])
def test_small_plane_loops_keep_their_padding_across_planes(capability, case):  # noqa: F811
    shape, fshape, up, down, padding = case
    g = torch.Generator().manual_seed(11)
    x = torch.randn(shape, dtype=torch.float64, generator=g) * 100
    for f in (torch.rand(fshape, dtype=torch.float64, generator=g) + 0.1,  # full rank
              torch.outer(torch.rand(fshape[0], dtype=torch.float64, generator=g) + 0.1,
                          torch.rand(fshape[1], dtype=torch.float64, generator=g) + 0.1)):  # two passes
        expected = brute_force(x, f, up, down, padding, False, 1.0)
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
            y = torch.ops.fastgan.upfirdn2d(x.to(dtype), f.to(dtype), up, down, padding, False, 1.0)
            torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol * 100)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CASES[:3] + CASES[4:6], ids=[IDS[i] for i in (0, 1, 2, 4, 5)])
def test_low_precision_error_within_twice_the_stock_reference(capability, case, dtype, layout):  # noqa: F811
    x, f, *args = inputs(case, dtype, layout, seed=3)
    exact = brute_force(x, f, *args)
    fused = torch.ops.fastgan.upfirdn2d(x, f.float(), *args)
    assert fused.dtype == dtype
    assert_layout_kept(fused, x)
    # The stock reference in the same dtype; where this torch has no CPU convolution for it,
    # float32 rounded to it, which is at least as accurate.
    try:
        stock = reference.upfirdn2d(x, f.float(), *args)
    except RuntimeError:
        stock = reference.upfirdn2d(x.float(), f.float(), *args).to(dtype)
    floor = {torch.float32: 1e-7, torch.float16: 1e-4, torch.bfloat16: 1e-3}[dtype]
    assert rel_err(fused, exact) <= 2 * rel_err(stock, exact) + floor


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_is_the_adjoint(backend, case):
    x, f, up, down, padding, flip, gain = inputs(case, seed=5)
    x.requires_grad_()
    y = fir.upfirdn2d(x, f, up, down, padding, flip, gain)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    (actual,) = torch.autograd.grad(y, x, grad)
    x64 = x.detach().requires_grad_()
    (expected,) = torch.autograd.grad(brute_force(x64, f, up, down, padding, flip, gain), x64, grad)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5]], ids=["up2", "asymmetric", "up3-down2"])
def test_gradcheck_and_gradgradcheck(backend, case):
    x, f, *args = inputs(case, seed=7)
    x.requires_grad_()
    fn = lambda t: fir.upfirdn2d(t, f, *args)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@needs_ext
def test_third_order_through_the_op():
    x, f, *args = inputs(CASES[0], seed=8)
    x.requires_grad_()
    y = torch.ops.fastgan.upfirdn2d(x, f, *args)
    (g1,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad((g1 ** 2).sum(), x, create_graph=True)
    (g3,) = torch.autograd.grad(g2.sum(), x)
    x64 = x.detach().requires_grad_()
    r = brute_force(x64, f, *args)
    (e1,) = torch.autograd.grad((r ** 3).sum(), x64, create_graph=True)
    (e2,) = torch.autograd.grad((e1 ** 2).sum(), x64, create_graph=True)
    (e3,) = torch.autograd.grad(e2.sum(), x64)
    torch.testing.assert_close(g3, e3, rtol=1e-10, atol=1e-10)


# --- NVlabs' helpers, each against the stock op it must equal ------------------------------

def test_setup_filter():
    f = fir.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    assert fir.setup_filter([1] * 8).shape == (8,)  # 8 taps or more: separable
    assert fir.setup_filter([1, 2], separable=True).shape == (2,)
    torch.testing.assert_close(fir.setup_filter([1, 1], gain=4).sum(), torch.tensor(4.0))
    torch.testing.assert_close(fir.setup_filter([1, 2], flip_filter=True, normalize=False),
                               torch.tensor([[4., 2], [2, 1]]))
    assert fir.setup_filter(None).shape == (1, 1)
    with pytest.raises(ValueError, match="at least one tap"):
        fir.setup_filter(torch.ones(2, 2, 2))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_helpers_are_the_stock_ops_they_generalise(backend, layout):
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64).contiguous(memory_format=layout)
    box = fir.setup_filter([1, 1])
    torch.testing.assert_close(fir.upsample2d(x, box), F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(fir.downsample2d(x, box), F.avg_pool2d(x, 2))
    torch.testing.assert_close(fir.filter2d(x, None), x)
    torch.testing.assert_close(fir.filter2d(x, torch.ones(1, 1, dtype=torch.float64), gain=3), 3 * x)
    # A 3 x 3 filter centred on each sample: conv2d with padding 1 (conv2d correlates).
    f = torch.rand(3, 3, dtype=torch.float64)
    expected = F.conv2d(x, f[None, None].expand(3, 1, 3, 3), padding=1, groups=3)
    torch.testing.assert_close(fir.filter2d(x, f, flip_filter=True), expected)
    torch.testing.assert_close(fir.filter2d(x, f.flip([0, 1])), expected)
    # Per-axis factors (a 1 x 2 box: nearest along x only) and the [x, y] padding form.
    y = fir.upsample2d(x, torch.tensor([[0.5, 0.5]]), up=[2, 1])
    assert y.shape == (2, 3, 6, 16)
    torch.testing.assert_close(y, x.repeat_interleave(2, dim=3))
    assert fir.downsample2d(x, box, down=[1, 2], padding=[0, 1]).shape == (2, 3, 4, 8)


def test_impl_ref_and_default_agree():
    x, f, *args = inputs(CASES[1], seed=9)
    a = fir.upfirdn2d(x, f, *args, impl="ref")
    for impl in (None, "cuda", "fastgan"):
        torch.testing.assert_close(fir.upfirdn2d(x, f, *args, impl=impl), a, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="impl must be one of"):
        fir.upfirdn2d(x, f, impl="triton")


def test_rosinality_api():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    k = torch.rand(4, 4, dtype=torch.float64)
    torch.testing.assert_close(rosinality.upfirdn2d(x, k, up=2, pad=(2, 1)), brute_force(x, k, [2, 2], [1, 1],
                                                                                        [2, 1, 2, 1], False, 1.0))
    torch.testing.assert_close(rosinality.upfirdn2d(x, k, down=2, pad=(1, 1, 0, 2)),
                               brute_force(x, k, [1, 1], [2, 2], [1, 1, 0, 2], False, 1.0))


# --- The op contract -------------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=["up2", "asymmetric"])
def test_opcheck(case):
    for layout in (torch.contiguous_format, torch.channels_last):
        x, f, *args = inputs(case, layout=layout)
        torch.library.opcheck(torch.ops.fastgan.upfirdn2d.default, (x, f, *args))
        torch.library.opcheck(torch.ops.fastgan.upfirdn2d.default, (x.requires_grad_(), f, *args))


@needs_ext
def test_compile_fullgraph():
    f = fir.setup_filter([1, 3, 3, 1], gain=4).double()

    def block(x):
        return fir.downsample2d(torch.relu(fir.upsample2d(x, f)), f)

    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    y, expected = compiled(x), block(x)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, grad)[0], torch.autograd.grad(expected, x, grad)[0])


# --- Bad input: one error each, the same words on both paths --------------------------------

BAD = [
    (lambda: (torch.randn(3, 4, 4), torch.ones(2, 2), 1, 1, 0), ValueError,
     "upfirdn2d expects a 4-D input (N, C, H, W), got a 3-D tensor of shape (3, 4, 4)"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(2, 2, 2), 1, 1, 0), ValueError,
     "expects a filter of shape (taps,) (separable) or (height, width) with at least one tap, got shape (2, 2, 2)"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(0), 1, 1, 0), ValueError, "with at least one tap, got shape (0,)"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(2, 2, dtype=torch.int64), 1, 1, 0), TypeError,
     "filter must be a floating-point tensor"),
    (lambda: (torch.randn(1, 1, 4, 4).int(), torch.ones(2, 2), 1, 1, 0), TypeError,
     "input must be a floating-point tensor"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(2, 2), [0, 1], 1, 0), ValueError,
     "upfirdn2d: up must be 2 integers [x, y], each >= 1, got [0, 1]"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(2, 2), 1, [1, 2, 3], 0), ValueError,
     "upfirdn2d: down must be 2 integers [x, y], each >= 1, got [1, 2, 3]"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(2, 2), 1, 1, [1, 1, 1]), ValueError,
     "upfirdn2d: padding must be 4 integers [x0, x1, y0, y1], got [1, 1, 1]"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(3, 3), 1, 1, [-2, 0, 0, 0]), ValueError,
     "upfirdn2d: input of shape (1, 1, 4, 4) with up [1, 1], padding [-2, 0, 0, 0] and a filter of shape (3, 3) "
     "leaves no output"),
    (lambda: (torch.randn(1, 1, 4, 4), torch.ones(3, 3), [1 << 29, 1], 1, 0), ValueError,
     "must stay below 2^30 samples per axis"),
]


@pytest.mark.parametrize("make,error,message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_same_error_on_both_paths(backend, make, error, message):
    x, f, up, down, padding = make()
    with pytest.raises(error) as info:
        fir.upfirdn2d(x, f, up, down, padding)
    assert message in str(info.value)
    if backend == "fused":  # the op itself, called directly, says the same
        with pytest.raises(error) as direct:
            torch.ops.fastgan.upfirdn2d(x, f, fir._scaling(up), fir._scaling(down), fir._padding(padding), False,
                                        1.0)
        assert str(direct.value).splitlines()[0] == str(info.value).splitlines()[0]


def test_filter_requiring_grad_is_refused(backend):
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    f = torch.ones(2, 2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="the filter gets no gradient"):
        fir.upfirdn2d(x, f)
    with torch.no_grad():
        fir.upfirdn2d(x, f)  # nothing to differentiate: fine


def test_the_package_exports():
    assert fastgan.stylegan.upfirdn2d is fir and fastgan.stylegan.rosinality is rosinality


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cuda_kernel_is_the_definition(case, layout):
    x, f, *args = inputs(case, layout=layout)
    y = torch.ops.fastgan.upfirdn2d(x.cuda(), f.cuda(), *args)
    torch.testing.assert_close(y.cpu(), brute_force(x, f, *args), rtol=1e-12, atol=1e-12)
    assert_layout_kept(y, x)
    x32 = x.float().cuda()
    first = torch.ops.fastgan.upfirdn2d(x32, f.float().cuda(), *args)
    assert torch.equal(first, torch.ops.fastgan.upfirdn2d(x32, f.float().cuda(), *args))  # the same bits
    x64 = x.cuda().requires_grad_()
    grad = torch.randn_like(y)
    (g,) = torch.autograd.grad(fir.upfirdn2d(x64, f.cuda(), *args), x64, grad)
    x_cpu = x.detach().requires_grad_()
    (e,) = torch.autograd.grad(brute_force(x_cpu, f, *args), x_cpu, grad.cpu())
    torch.testing.assert_close(g.cpu(), e, rtol=1e-12, atol=1e-12)
