"""The emulated CUDA kernels of the standalone activation, the fused losses and a Linear
layer's bias + activation against the float64 reference, and the emulation's own checks
(missing barriers, misaligned vectors, bank conflicts, shared-memory bounds, deadlocks).
The BatchNorm kernels are in test_cuda_emu.py."""
import zlib

import pytest
import torch

from emu_cases import ACTS, DTYPES, launches_of, make, repeat_identical
from fastgan import reference
from helpers import assert_close

pytestmark = pytest.mark.cuda_emu


# --- Activation and BCE -------------------------------------------------------------------

@pytest.mark.parametrize("act,slope", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,offset", [((2, 8, 4, 4), False), ((3, 5, 7, 1), False), ((2, 8, 4, 4), True),
                                          ((64, 16, 32, 32), False)], ids=["vector", "odd", "misaligned", "large"])
def test_activation(ops, act, slope, dtype, shape, offset):
    g = torch.Generator().manual_seed(4)
    x = make(shape, dtype, "contiguous", g, offset=offset, shift=0.0)
    y = ops.activation(x, act, slope)
    assert_close(y, reference.activation(x.double(), act, slope), dtype)
    grad_out = make(shape, dtype, "contiguous", g, offset=offset, shift=0.0)
    dx = ops.activation_backward(grad_out, y, act, slope)
    assert_close(dx, reference.activation_backward(grad_out.double(), y.double(), act, slope), dtype)


@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 37, 300_000], ids=["one", "one-block", "many-blocks"])
@pytest.mark.parametrize("with_target", [True, False])
def test_bce_with_logits(emu, ops, reduction, dtype, n, with_target):
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(n, generator=g, dtype=torch.float64) * 3).to(dtype)
    target = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) if with_target else None
    loss, grad = repeat_identical(emu, lambda: ops.bce_with_logits(x, target, 0.9, reduction), runs=2)
    x64 = x.double().requires_grad_()
    t64 = target.double() if with_target else torch.full((n,), 0.9, dtype=torch.float64)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        x64, t64, reduction=["none", "mean", "sum"][reduction])
    (expected_grad,) = torch.autograd.grad(expected.sum(), x64)
    scale = 1.0 if reduction == 0 else 4.0
    # Rounded to the output dtype first: an fp16 sum of 300,000 losses is inf on every path.
    assert_close(loss, expected.detach().to(dtype), dtype, scale=scale, msg="loss")
    assert_close(grad, expected_grad, dtype, msg="grad")


LOSS_CASES = [("hinge", 1.0), ("hinge", 0.0), ("lsgan", 1.0), ("lsgan", 0.0), ("linear", 1.0), ("linear", 0.0),
              ("bce", 0.9)]
# Every dtype on one block; the many-block reduction (the last-block ticket) in fp32, where the
# BCE test above already covers the other dtypes' reduction.
LOSS_SIZES = [(n, dtype) for n in (1, 37) for dtype in DTYPES] + [(300_000, torch.float32)]


@pytest.mark.parametrize("kind,target", LOSS_CASES)
@pytest.mark.parametrize("reduction", [0, 1, 2], ids=["none", "mean", "sum"])
@pytest.mark.parametrize("n,dtype", LOSS_SIZES, ids=lambda v: str(v))
def test_logit_loss(emu, ops, kind, target, reduction, dtype, n):
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(n, generator=g, dtype=torch.float64) * 3).to(dtype)
    loss, grad = repeat_identical(emu, lambda: ops.logit_loss(x, target, kind, reduction), runs=2)
    x64 = x.double().requires_grad_()
    expected = reference.logit_loss(x64, target, kind, reduction)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x64)
    scale = 1.0 if reduction == 0 else 4.0
    assert_close(loss, expected.detach().to(dtype), dtype, scale=scale, msg="loss")
    assert_close(grad, expected_grad, dtype, msg="grad")


# --- A Linear layer's bias + activation ----------------------------------------------------

# (rows, C) or (*, C); with fp32 the vector width is 4 (8 for fp16/bf16, 2 for fp64).
BIAS_ACT_SHAPES = [
    ((6, 64), False, "vector path, one split: the block writes grad_bias itself"),
    ((7, 13), False, "scalar path: C not a multiple of the vector width"),
    ((9, 1), False, "one column"),
    ((5, 1000), False, "many column tiles"),
    ((4096, 16), False, "many splits: partial sums and the last-block ticket"),
    ((6, 64), True, "misaligned storage: the scalar path"),
    ((2, 3, 8), False, "3-D input"),
    ((0, 8), False, "no rows"),
]


@pytest.mark.parametrize("shape,offset,_why", BIAS_ACT_SHAPES, ids=[f"{s}{'-offset' if o else ''}"
                                                                   for s, o, _ in BIAS_ACT_SHAPES])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bias_act(emu, ops, shape, offset, _why, dtype):
    g = torch.Generator().manual_seed(zlib.crc32(repr((shape, offset, dtype)).encode()))
    act, slope = ACTS[sum(shape) % len(ACTS)]
    x = make(shape, dtype, "contiguous", g, offset=offset, shift=0.0)
    b = make(shape[-1:], dtype, "contiguous", g, offset=offset, shift=0.0)
    grad_out = make(shape, dtype, "contiguous", g, offset=offset, shift=0.0)

    def run():
        y = ops.bias_act(x, b, act, slope)
        return (y, *ops.bias_act_backward(grad_out, y, act, slope))

    y, dx, db = repeat_identical(emu, run, runs=2)
    assert_close(y, reference.bias_act(x.double(), b.double(), act, slope), dtype, msg="forward")
    rdx, rdb = reference.bias_act_backward(grad_out.double(), y.double(), act, slope)
    assert_close(dx, rdx, dtype, msg="grad input")
    rows = max(1, y.numel() // shape[-1])
    assert_close(db, rdb, dtype, scale=max(1.0, rows ** 0.5), msg="grad bias")


def test_bias_act_is_one_launch_each_way(emu, ops):
    for rows in (6, 4096):  # one split, and many (the last block reduces)
        x, b = torch.randn(rows, 16), torch.randn(16)
        y = ops.bias_act(x, b, "leaky_relu", 0.2)
        assert launches_of(emu, lambda: ops.bias_act(x, b, "leaky_relu", 0.2)) == 1
        assert launches_of(emu, lambda: ops.bias_act_backward(x, y, "leaky_relu", 0.2)) == 1


def test_bias_act_backward_and_losses_share_the_ticket(ops):
    """Reductions of both kinds, back to back on one stream, leave the ticket at zero for each other."""
    x, y = torch.randn(4096, 16), torch.randn(4096, 16)
    first = ops.bias_act_backward(x, y, "identity", 0.0)[1]
    loss = ops.bce_with_logits(x.flatten(), None, 0.0, 2)[0]
    for _ in range(2):
        assert torch.equal(ops.bias_act_backward(x, y, "identity", 0.0)[1], first)
        assert torch.equal(ops.bce_with_logits(x.flatten(), None, 0.0, 2)[0], loss)
    assert_close(first, x.double().sum(0), torch.float32, scale=10)


def test_bce_reused_ticket_counter(ops):
    """Back-to-back reductions each see a fresh last-block ticket."""
    x = torch.linspace(-4, 4, 100_000)
    first = ops.bce_with_logits(x, None, 0.0, 2)[0]
    for _ in range(3):
        assert torch.equal(ops.bce_with_logits(x, None, 0.0, 2)[0], first)


def test_sanitizer_script_calls_every_op_correctly(emu):
    """tests/sanitize_kernels.py, which the GPU run puts under compute-sanitizer, on the emulated
    kernels: it must not wait for a GPU to find out that an op's arguments changed."""
    import sanitize_kernels

    assert sanitize_kernels.main(["--emu"]) == 0


# --- The emulation itself -----------------------------------------------------------------

def test_emulation_catches_a_missing_barrier(emu):
    expected = torch.tensor([128 * 1000 * b + 127 * 128 // 2 for b in range(8)])
    for seed in range(5):
        emu.set_seed(seed)
        assert torch.equal(emu.selftest_block_sum(8, True), expected)
    wrong = 0
    for seed in range(5):
        emu.set_seed(seed)
        wrong += int(not torch.equal(emu.selftest_block_sum(8, False), expected))
    assert wrong >= 4, "the racy kernel should give wrong sums under nearly every thread order"


def test_emulation_refuses_a_misaligned_vector_access(emu):
    with pytest.raises(RuntimeError, match="misaligned address: a 16-byte vector access"):
        emu.selftest_misaligned_load()


@pytest.mark.parametrize("stride,size,wavefronts", [(1, 4, 1), (2, 4, 2), (3, 4, 1), (8, 4, 8), (32, 4, 32),
                                                    (0, 4, 1), (1, 8, 2), (2, 8, 4)])
def test_emulation_counts_bank_conflicts(emu, stride, size, wavefronts):
    """A warp storing and loading shared memory at lane * stride: one request each way, costing
    the most distinct words any one bank serves (a shared word is a broadcast)."""
    assert emu.selftest_shared_stride(stride, size) == (2, 2 * wavefronts)


def test_emulation_refuses_shared_memory_out_of_bounds(emu):
    with pytest.raises(RuntimeError, match="shared memory out of bounds: a 4-byte access at byte offset 4096 of a "
                                           "4096-byte array"):
        emu.selftest_shared_stride(1, 4, reach=1)


def test_emulation_reports_a_deadlock(emu):
    with pytest.raises(RuntimeError, match="deadlock"):
        emu.selftest_deadlock()
