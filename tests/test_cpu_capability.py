"""The CPU kernels' loops are compiled once per instruction set and chosen at run time
(csrc/cpu/isa.h, for_each_isa.h). Whichever set this processor picks, the other must be right
too: a wheel built here runs elsewhere. Each set against the stock reference, and the 16-bit
loads and stores of every set (csrc/cpu/convert.h) against torch's own conversions."""
import math

import pytest
import torch
import torch.nn.functional as F

import fastgan
from helpers import assert_close

pytestmark = pytest.mark.skipif(not fastgan._backend.COMPILED, reason="needs fastgan._C")


def capabilities():
    if not fastgan._backend.COMPILED:
        return []
    caps = ["default"]
    try:
        fastgan._backend._C.set_cpu_capability("avx2")
        caps.append("avx2")
    except ValueError:  # this processor has no AVX2: only the baseline table can run here
        pass
    finally:
        fastgan._backend._C.set_cpu_capability(_chosen)
    return caps


_chosen = fastgan._backend._C.cpu_capability() if fastgan._backend.COMPILED else None


@pytest.fixture(params=capabilities())
def capability(request):
    fastgan._backend._C.set_cpu_capability(request.param)
    yield request.param
    fastgan._backend._C.set_cpu_capability(_chosen)


def test_the_widest_table_is_chosen():
    has_avx2 = "avx2" in capabilities()
    assert _chosen == ("avx2" if has_avx2 else "default") or fastgan._backend.os.environ.get("FASTGAN_CPU_CAPABILITY")


def test_unknown_capability_is_refused():
    with pytest.raises(ValueError, match="unknown CPU capability 'sse9'"):
        fastgan._backend._C.set_cpu_capability("sse9")


# C = 13 and HW = 7*5 are not multiples of any vector width: the remainder loops run too.
@pytest.mark.parametrize("shape", [(4, 13, 7, 5), (2, 64, 8, 8)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("act,slope", [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0), ("sigmoid", 0.0)])
def test_batch_norm_act_each_table(capability, shape, dtype, layout, act, slope):
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(shape, generator=g) * 3 + 1).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.rand(shape[1], generator=g) + 0.5, torch.randn(shape[1], generator=g)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with fastgan.use_backend("fused"):
        actual = fastgan.functional.batch_norm_act(x1, None, None, w, b, True, activation=act, negative_slope=slope)
    expected = fastgan.activations.activate(F.batch_norm(x2.double(), None, None, w.double(), b.double(), True),
                                            act, slope)
    assert_close(actual, expected, dtype, msg=f"{capability} forward")
    grad = torch.randn(shape, generator=g).to(dtype)
    assert_close(torch.autograd.grad(actual, x1, grad)[0], torch.autograd.grad(expected, x2, grad.double())[0], dtype,
                 scale=4, msg=f"{capability} backward")


@pytest.mark.parametrize("act,slope", [("leaky_relu", 0.2), ("tanh", 0.0)])
def test_activation_and_bce_each_table(capability, act, slope):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 7, 9, generator=g, requires_grad=True)
    with fastgan.use_backend("fused"):
        y = fastgan.functional.activation(x, act, slope)
        loss = fastgan.functional.bce_with_logits(y.flatten(), 0.9)
    expected_y = fastgan.activations.activate(x.double(), act, slope)
    assert_close(y, expected_y, torch.float32)
    expected = F.binary_cross_entropy_with_logits(expected_y.flatten(), torch.full((945,), 0.9, dtype=torch.float64))
    assert_close(loss, expected, torch.float32)
    assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(expected, x)[0], torch.float32)


# 37 columns: a remainder after every vector width; 3000 rows: several threads' blocks of rows.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("act,slope", [("leaky_relu", 0.2), ("relu", 0.0), ("tanh", 0.0)])
def test_bias_act_each_table(capability, dtype, act, slope):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3000, 37, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(37, generator=g, dtype=torch.float64).to(dtype)
    y = torch.ops.fastgan.bias_act(x, b, act, slope)
    assert_close(y, fastgan.reference.bias_act(x.double(), b.double(), act, slope), dtype, msg=f"{capability} forward")
    grad = torch.randn(3000, 37, generator=g, dtype=torch.float64).to(dtype)
    dx, db = torch.ops.fastgan.bias_act_backward(grad, y, act, slope)
    rdx, rdb = fastgan.reference.bias_act_backward(grad.double(), y.double(), act, slope)
    assert_close(dx, rdx, dtype, msg=f"{capability} grad input")
    assert_close(db, rdb, dtype, scale=50, msg=f"{capability} grad bias")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("slope", [0.3, 1.7])
def test_16bit_loads_and_stores_round_as_torch_does(capability, dtype, slope):
    """Every 16-bit pattern goes through the kernels' load and store. leaky_relu keeps x > 0
    (a round trip) and multiplies x < 0 by the slope in float (a product to round, subnormal,
    overflowing at 1.7): bit for bit what torch's float -> 16-bit conversion makes of it."""
    x = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    with fastgan.use_backend("fused"):
        y = fastgan.functional.activation(x, "leaky_relu", slope)
    expected = torch.where(x.float() > 0, x.float(), x.float() * slope).to(dtype)
    nan = expected.isnan()
    assert nan.sum() > 0 and torch.equal(y.isnan(), nan)
    mismatched = (y.view(torch.int16) != expected.view(torch.int16)) & ~nan
    assert not mismatched.any(), f"{int(mismatched.sum())} patterns differ, e.g. {x[mismatched][:4].tolist()}"


# Planes of 703 values and rows of 300 channels: whole 256-value chunks, then 16-value vectors,
# then single values (loop_support.h's store_each and store_row).
@pytest.mark.parametrize("shape,layout", [((1, 94, 37, 19), "contiguous"), ((2, 300, 11, 10), "channels_last")])
@pytest.mark.parametrize("scale", [0.3, 1.7])
def test_bfloat16_batch_norm_stores_round_as_torch_does(capability, shape, layout, scale):
    """Every bfloat16 pattern through batch_norm_act's forward store (eval, identity: y = x *
    weight with the statistics at 0 and 1) and its backward's (dx = grad * weight): bit for bit
    what torch's float -> bfloat16 conversion makes of the float product."""
    patterns = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    count = math.prod(shape)
    x = patterns.repeat(count // patterns.numel() + 1)[:count].view(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    weight = torch.full((c,), scale)
    mean, var, eps = torch.zeros(c), torch.full((c,), 1 - 2**-20), 2**-20  # var + eps == 1 exactly
    y = torch.ops.fastgan.batch_norm_act(x, weight, None, mean, var, None, False, 0.1, eps, "identity", 0.0)[0]
    dx = torch.ops.fastgan.batch_norm_act_backward(x, torch.zeros_like(x), weight, None, mean, var, False, eps,
                                                   "identity", 0.0)[0]
    expected = (x.float() * scale + 0.0).to(torch.bfloat16)  # + 0.0: the kernel adds the shift, 0
    for name, actual, want in [("forward", y, expected), ("backward", dx, (x.float() * scale).to(torch.bfloat16))]:
        nan = want.isnan()
        assert nan.sum() > 0 and torch.equal(actual.isnan(), nan), name
        mismatched = (actual.view(torch.int16) != want.view(torch.int16)) & ~nan
        assert not mismatched.any(), f"{capability} {name}: {int(mismatched.sum())} patterns differ"
