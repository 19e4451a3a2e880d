"""The emulated CUDA kernels of StyleGAN's ops against their float64 definitions: upfirdn2d
(test_upfirdn2d.py's brute force) and bias_act (test_stylegan_bias_act.py's stock composition),
every dtype, both layouts, storage that starts off a 16-byte boundary, grids that stride over
more elements than one wave of blocks, one launch per call, the same bits under every thread
and block order."""
import pytest
import torch

from emu_cases import DTYPES, launches_of, make, repeat_identical
from test_stylegan_bias_act import ACTS as BIAS_ACTS
from test_stylegan_bias_act import LAYOUT_IDS, LAYOUTS, definition
from test_upfirdn2d import CASES, IDS, assert_layout_kept, brute_force, inputs

pytestmark = pytest.mark.cuda_emu

TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_the_definition_in_float64(ops, case, layout):
    x, f, *args = inputs(case, layout=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    y = ops.upfirdn2d(x, f, *args)
    torch.testing.assert_close(y, brute_force(x, f, *args), rtol=1e-12, atol=1e-12)
    assert_layout_kept(y, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("offset", [False, True], ids=["aligned", "misaligned"])
def test_every_dtype_and_layout(emu, ops, dtype, layout, offset):
    g = torch.Generator().manual_seed(11)
    x = make((2, 5, 7, 6), dtype, layout, g, offset=offset, shift=0.0)
    f = torch.rand(4, 4, generator=g) + 0.1
    args = ([2, 2], [1, 1], [2, 1, 2, 1], False, 4.0)
    y = repeat_identical(emu, lambda: (ops.upfirdn2d(x, f, *args),), runs=2)[0]
    assert y.dtype == dtype
    expected = brute_force(x, f, *args)
    assert ((y.double() - expected).abs() <= TOL[dtype] * (1 + expected.abs())).all()


@pytest.fixture
def two_sms(emu):
    """An emulated device of 2 SMs: one wave is 8 blocks of 256 threads."""
    emu.set_device(2)
    yield
    emu.set_device(132)


def test_one_launch_and_a_grid_stride_past_one_wave(emu, ops, two_sms):
    # 2 x 8 x 64 x 64 outputs: each of the wave's 2048 threads walks 32 of them.
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 8, 32, 32, generator=g)
    f = torch.rand(4, generator=g) + 0.1
    args = ([2, 2], [1, 1], [2, 1, 2, 1], False, 4.0)
    assert launches_of(emu, lambda: ops.upfirdn2d(x, f, *args)) == 1
    y = ops.upfirdn2d(x, f, *args)
    torch.testing.assert_close(y.double(), brute_force(x, f, *args), rtol=1e-5, atol=1e-5)


# --- bias_act --------------------------------------------------------------------------------

@pytest.mark.parametrize("act", BIAS_ACTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_bias_act_matches_the_definition_in_float64(ops, act, layout):
    shape, dim, fmt = layout
    g = torch.Generator().manual_seed(13)
    x = (torch.randn(shape, dtype=torch.float64, generator=g) * 2)
    x = x.contiguous(memory_format=fmt) if x.dim() == 4 else x
    b = torch.randn(shape[dim], dtype=torch.float64, generator=g)
    y = ops.stylegan_bias_act(x, b, dim, act, 0.25, 1.3, 2.0)
    torch.testing.assert_close(y, definition(x, b, dim, act, 0.25, 1.3, 2.0), rtol=1e-12, atol=1e-12)
    assert y.stride() == x.stride()
    grad = torch.randn(shape, dtype=torch.float64, generator=g)
    x2 = x.detach().requires_grad_()
    (expected,) = torch.autograd.grad(definition(x2, b, dim, act, 0.25, 1.3, 2.0), x2, grad)
    gx = ops.stylegan_bias_act_backward(grad, x, b, dim, act, 0.25, 1.3, 2.0)
    torch.testing.assert_close(gx, expected, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("offset", [False, True], ids=["aligned", "misaligned"])
def test_bias_act_every_dtype_and_layout(emu, ops, dtype, layout, offset):
    g = torch.Generator().manual_seed(14)
    x = make((2, 5, 7, 6), dtype, layout, g, offset=offset, shift=0.0)
    b = torch.randn(5, generator=g).to(dtype)
    y = repeat_identical(emu, lambda: (ops.stylegan_bias_act(x, b, 1, "lrelu", 0.2, 1.4, 1.0),), runs=2)[0]
    expected = definition(x.double(), b.double(), 1, "lrelu", 0.2, 1.4, 1.0)
    assert y.dtype == dtype
    assert ((y.double() - expected).abs() <= TOL[dtype] * (1 + expected.abs())).all()
    assert ops.stylegan_bias_act(x, None, 1, "swish", 0.0, 1.0, -1.0).dtype == dtype


def test_bias_act_one_launch_each_and_a_grid_stride(emu, ops, two_sms):
    g = torch.Generator().manual_seed(15)
    x = torch.randn(4, 16, 32, 32, generator=g)  # 65,536 elements: 32 per thread of 8 blocks
    b = torch.randn(16, generator=g)
    assert launches_of(emu, lambda: ops.stylegan_bias_act(x, b, 1, "lrelu", 0.2, 1.4, -1.0)) == 1
    grad = torch.randn_like(x)
    assert launches_of(emu, lambda: ops.stylegan_bias_act_backward(grad, x, b, 1, "lrelu", 0.2, 1.4, -1.0)) == 1
    torch.testing.assert_close(ops.stylegan_bias_act(x, b, 1, "lrelu", 0.2, 1.4, -1.0),
                               definition(x, b, 1, "lrelu", 0.2, 1.4, None))


# --- filtered_lrelu's activation ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("width", [1, 4, 7, 20], ids=lambda w: f"w{w}")
def test_filtered_lrelu_act_and_its_record(emu, ops, dtype, width):
    g = torch.Generator().manual_seed(16)
    z = (torch.randn(2, 3, 5, width, generator=g, dtype=torch.float64) * 2).to(dtype)
    a, sign = repeat_identical(emu, lambda: ops.filtered_lrelu_act(z, 1.4, 0.2, 1.5), runs=2)
    y = torch.nn.functional.leaky_relu(z.double(), 0.2) * 1.4
    assert a.dtype == dtype
    assert ((a.double() - y.clamp(-1.5, 1.5)).abs() <= TOL[dtype] * (1 + y.abs())).all()
    codes = torch.where(y.abs() > 1.5, 2, torch.where(z.double() > 0, 0, 1))
    unpacked = torch.stack([(sign >> (2 * k)) & 3 for k in range(4)], -1).flatten(-2)[..., :width]
    assert sign.shape == (2, 3, 5, (width + 3) // 4) and torch.equal(unpacked.long(), codes)
    grad = torch.randn(z.shape, generator=g, dtype=torch.float64).to(dtype)
    gz = ops.filtered_lrelu_act_backward(grad, sign, 1.4, 0.2)
    factor = torch.tensor([1.4, 1.4 * 0.2, 0.0], dtype=torch.float64)[codes]
    expected = grad.double() * factor
    assert ((gz.double() - expected).abs() <= TOL[dtype] * (1 + expected.abs())).all()


def test_filtered_lrelu_act_one_launch_each_and_a_grid_stride(emu, ops, two_sms):
    z = torch.randn(4, 8, 33, 65, generator=torch.Generator().manual_seed(17))  # 17 bytes a row: 17,952 bytes
    a, sign = ops.filtered_lrelu_act(z, 1.0, 0.1, -1.0)
    torch.testing.assert_close(a, torch.nn.functional.leaky_relu(z, 0.1))
    assert launches_of(emu, lambda: ops.filtered_lrelu_act(z, 1.0, 0.1, -1.0)) == 1
    assert launches_of(emu, lambda: ops.filtered_lrelu_act_backward(z, sign, 1.0, 0.1)) == 1
