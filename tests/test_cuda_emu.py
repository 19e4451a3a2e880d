"""Every CUDA kernel, run on the CPU by the emulation build (tests/emu.py), against the
stock-PyTorch reference computed in float64: every op; fp32/fp16/bf16/fp64; NCHW and
channels_last; the 16-byte vector path and the scalar one (shapes that are and are not a
multiple of the vector width, a misaligned storage offset); one block and many blocks per
channel; C = 1, 3, 64, 1000; empty batches; eval; momentum=None. Multi-block cases run under
several thread and block orders and must give the same bits each time."""
import zlib

import pytest
import torch

from fastgan import reference
from emu_cases import (ACTS, DTYPES, EPS, SHAPES, bn_params, check_layout, launches_of, make, repeat_identical,
                        stats_dtype)
from helpers import assert_close

pytestmark = pytest.mark.cuda_emu

def reference_forward(x, weight, bias, running_mean, running_var, nbt, training, momentum, act, slope):
    """(y, save_mean, save_var) and the updated running stats, all float64, as nn.BatchNorm2d does it."""
    x64 = x.double()
    rm = running_mean.double().clone() if running_mean is not None else None
    rv = running_var.double().clone() if running_var is not None else None
    counter = nbt.clone() if nbt is not None else None
    use_batch = training or running_mean is None
    if use_batch:
        save_mean, save_var = reference.batch_norm_stats(x64)
    else:
        save_mean, save_var = rm.clone(), rv.clone()
    y = reference.batch_norm_act(x64, weight.double() if weight is not None else None,
                                 bias.double() if bias is not None else None, rm, rv, counter, training, momentum, EPS,
                                 act, slope)
    return y, save_mean, save_var, rm, rv, counter


def reference_backward(grad_out, x, weight, bias, save_mean, save_var, training, act, slope):
    x64 = x.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    b64 = bias.double().requires_grad_()
    if training:
        y = reference.normalize_act(x64, w64, b64, None, None, True, EPS, act, slope)
    else:
        y = reference.normalize_act(x64, w64, b64, save_mean.double(), save_var.double(), False, EPS, act, slope)
    return torch.autograd.grad(y, [x64, w64, b64], grad_out.double())


# --- BatchNorm + activation: forward, running stats, backward ------------------------------

@pytest.mark.parametrize("shape,_why", SHAPES, ids=[str(s) for s, _ in SHAPES])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batch_norm_act_training(emu, ops, shape, _why, layout, dtype):
    g = torch.Generator().manual_seed(zlib.crc32(repr((shape, layout, dtype)).encode()))
    act, slope = ACTS[sum(shape) % len(ACTS)]
    x = make(shape, dtype, layout, g)
    weight, bias, rm0, rv0 = bn_params(shape[1], g, stats_dtype(dtype))
    nbt0 = torch.tensor(3, dtype=torch.long)

    def run():
        rm, rv, nbt = rm0.clone(), rv0.clone(), nbt0.clone()
        y, mean, var = ops.batch_norm_act(x, weight, bias, rm, rv, nbt, True, 0.1, EPS, act, slope)
        return y, mean, var, rm, rv, nbt

    y, mean, var, rm, rv, nbt = repeat_identical(emu, run)
    ry, rmean, rvar, rrm, rrv, rnbt = reference_forward(x, weight, bias, rm0, rv0, nbt0, True, 0.1, act, slope)
    check_layout(y, x)
    sdt = stats_dtype(dtype)
    assert_close(y, ry, dtype, msg="output")
    assert_close(mean, rmean, sdt, scale=4, msg="saved mean")
    assert_close(var, rvar, sdt, scale=4, msg="saved variance")
    assert_close(rm, rrm, sdt, scale=4, msg="running_mean")
    assert_close(rv, rrv, sdt, scale=4, msg="running_var")
    assert int(nbt) == int(rnbt) == 4

    grad_out = make(shape, dtype, layout, g, shift=0.0)
    gx, gw, gb = repeat_identical(
        emu, lambda: ops.batch_norm_act_backward(grad_out, x, weight, bias, mean, var, True, EPS, act, slope))
    rgx, rgw, rgb = reference_backward(grad_out, x, weight, bias, mean, var, True, act, slope)
    check_layout(gx, x)
    assert_close(gx, rgx, dtype, scale=2, msg="grad_input")
    assert_close(gw, rgw, sdt, scale=4, msg="grad_weight")
    assert_close(gb, rgb, sdt, scale=4, msg="grad_bias")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("act,slope", ACTS)
def test_batch_norm_act_eval(emu, ops, layout, dtype, act, slope):
    g = torch.Generator().manual_seed(7)
    shape = (3, 16, 5, 4)
    x = make(shape, dtype, layout, g)
    weight, bias, rm, rv = bn_params(shape[1], g)
    rm_before, rv_before = rm.clone(), rv.clone()
    y, mean, var = ops.batch_norm_act(x, weight, bias, rm, rv, None, False, 0.1, EPS, act, slope)
    ry, *_ = reference_forward(x, weight, bias, rm, rv, None, False, 0.1, act, slope)
    assert_close(y, ry, dtype, msg="output")
    assert torch.equal(mean, rm) and torch.equal(var, rv), "eval returns the running statistics"
    assert torch.equal(rm, rm_before) and torch.equal(rv, rv_before), "eval leaves the running statistics alone"
    grad_out = make(shape, dtype, layout, g, shift=0.0)
    gx, gw, gb = ops.batch_norm_act_backward(grad_out, x, weight, bias, mean, var, False, EPS, act, slope)
    rgx, rgw, rgb = reference_backward(grad_out, x, weight, bias, mean, var, False, act, slope)
    assert_close(gx, rgx, dtype, scale=2, msg="grad_input")
    assert_close(gw, rgw, torch.float32, scale=4, msg="grad_weight")
    assert_close(gb, rgb, torch.float32, scale=4, msg="grad_bias")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_misaligned_storage_takes_the_scalar_path(ops, layout):
    g = torch.Generator().manual_seed(3)
    shape = (2, 8, 4, 4)  # a multiple of the vector width in both layouts; only the offset forbids it
    x = make(shape, torch.float32, layout, g, offset=True)
    assert x.data_ptr() % 16 != 0
    weight, bias, rm, rv = bn_params(8, g)
    y, mean, var = ops.batch_norm_act(x, weight, bias, rm.clone(), rv.clone(), None, True, 0.1, EPS, "relu", 0.0)
    ry, rmean, rvar, *_ = reference_forward(x, weight, bias, rm, rv, None, True, 0.1, "relu", 0.0)
    assert_close(y, ry, torch.float32)
    grad_out = make(shape, torch.float32, layout, g, offset=True)
    gx, gw, gb = ops.batch_norm_act_backward(grad_out, x, weight, bias, mean, var, True, EPS, "relu", 0.0)
    rgx, rgw, rgb = reference_backward(grad_out, x, weight, bias, mean, var, True, "relu", 0.0)
    assert_close(gx, rgx, torch.float32, scale=2)
    assert_close(gw, rgw, torch.float32, scale=4)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("counter", [True, False])
def test_running_stats_like_batchnorm2d(ops, momentum, counter):
    """momentum=None averages over num_batches_tracked; with no counter either, nn.BatchNorm2d
    uses factor 0 and leaves the running statistics as they are."""
    g = torch.Generator().manual_seed(11)
    shape = (4, 6, 3, 3)
    weight, bias, rm, rv = bn_params(6, g)
    nbt = torch.tensor(2, dtype=torch.long) if counter else None
    ref_rm, ref_rv, ref_nbt = rm.double().clone(), rv.double().clone(), nbt.clone() if counter else None
    for _ in range(3):
        x = make(shape, torch.float32, "contiguous", g)
        ops.batch_norm_act(x, weight, bias, rm, rv, nbt, True, momentum, EPS, "relu", 0.0)
        reference.batch_norm_act(x.double(), weight.double(), bias.double(), ref_rm, ref_rv, ref_nbt, True, momentum,
                                 EPS, "relu", 0.0)
    assert_close(rm, ref_rm, torch.float32, msg="running_mean")
    assert_close(rv, ref_rv, torch.float32, msg="running_var")
    if counter:
        assert int(nbt) == int(ref_nbt) == 5


def test_batch_norm_update_stats_matches_cpu_op(ops):
    """Strided buffers are updated in place, and fp16 buffers are blended from the float batch
    statistics and rounded once, as the CPU op does (the CUDA op used to refuse the first and
    round differently in the second)."""
    g = torch.Generator().manual_seed(5)
    C = 10
    mean, var = torch.randn(C, generator=g), torch.rand(C, generator=g) + 0.5
    for dtype, strided in [(torch.float32, True), (torch.float16, False), (torch.bfloat16, True)]:
        results = []
        for op in (ops.batch_norm_update_stats, torch.ops.fastgan.batch_norm_update_stats):
            base_m = torch.linspace(-1, 1, 2 * C).to(dtype)
            base_v = torch.linspace(0.5, 2, 2 * C).to(dtype)
            rm, rv = (base_m[::2], base_v[::2]) if strided else (base_m[:C], base_v[:C])
            nbt = torch.tensor(0, dtype=torch.long)
            op(rm, rv, nbt, mean, var, 0.3, 7)
            results.append((base_m, base_v, nbt))
        (em, ev, en), (cm, cv, cn) = results
        assert torch.equal(em, cm) and torch.equal(ev, cv), f"{dtype}, strided={strided}"
        assert int(en) == int(cn) == 1


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_empty_batch(ops, layout):
    g = torch.Generator().manual_seed(1)
    weight, bias, rm, rv = bn_params(3, g)
    x = torch.empty(0, 3, 4, 4)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    # Eval: the saved statistics are the running ones (the CUDA op used to return uninitialised memory).
    for _ in range(3):
        torch.empty(1 << 16).fill_(float("nan"))  # leave NaN in freed memory an empty() may reuse
        y, mean, var = ops.batch_norm_act(x, weight, bias, rm, rv, None, False, 0.1, EPS, "relu", 0.0)
        assert y.shape == x.shape
        assert torch.equal(mean, rm) and torch.equal(var, rv)
    gx, gw, gb = ops.batch_norm_act_backward(x, x, weight, bias, rm, rv, False, EPS, "relu", 0.0)
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros(3)) and torch.equal(gb, torch.zeros(3))
    mean, var = ops.batch_norm_stats(x)
    assert torch.equal(mean, torch.zeros(3)) and torch.equal(var, torch.zeros(3))
    assert ops.activation(x, "tanh", 0.0).shape == x.shape


def allocations_of(fn):
    """Tensors allocated by one call (aten::empty, which empty_like and zeros go through)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name == "aten::empty")


@pytest.mark.parametrize("shape", [(2, 8, 4, 4), (4, 8, 64, 64)], ids=["one split", "many splits"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_launches_and_allocations_per_op(emu, ops, shape, layout):
    """What a GPU run should see (benchmarks/results/NOTES.md): a training BatchNorm+activation
    is two launches each way, the statistics' finish folded into the reduction by a last-block
    ticket, and each call allocates its outputs and one scratch tensor."""
    g = torch.Generator().manual_seed(2)
    x = make(shape, torch.float32, layout, g)
    C = shape[1]
    weight, bias, rm, rv = bn_params(C, g)
    nbt = torch.tensor(0, dtype=torch.long)
    y, mean, var = ops.batch_norm_act(x, weight, bias, rm, rv, nbt, True, 0.1, EPS, "relu", 0.0)  # warm-up
    ops.batch_norm_act_backward(x, x, weight, bias, mean, var, True, EPS, "relu", 0.0)

    def forward(training, running=True):
        return lambda: ops.batch_norm_act(x, weight, bias, rm if running else None, rv if running else None,
                                          nbt if running else None, training, 0.1, EPS, "relu", 0.0)

    def backward():
        return ops.batch_norm_act_backward(x, x, weight, bias, mean, var, True, EPS, "relu", 0.0)

    # Training: statistics (finished by each channel tile's last block, running stats included),
    # apply. Eval: apply.
    assert launches_of(emu, forward(True)) == 2 and allocations_of(forward(True)) == 3 + 1
    assert launches_of(emu, forward(True, running=False)) == 2
    assert launches_of(emu, forward(False)) == 1 and allocations_of(forward(False)) == 3
    # Backward: reduce (finished into grad_weight, grad_bias and the sums), grad_input.
    assert launches_of(emu, backward) == 2 and allocations_of(backward) == 3 + 1
    # Synchronised BatchNorm's pieces: one launch each.
    assert launches_of(emu, lambda: ops.batch_norm_stats(x)) == 1
    assert launches_of(emu, lambda: ops.batch_norm_act_backward_reduce(x, x, weight, bias, mean, var, EPS, "relu",
                                                                       0.0)) == 1
    assert launches_of(emu, lambda: ops.batch_norm_act_backward_elemt(x, x, weight, bias, rm, rv, rm, rv, EPS, "relu",
                                                                      0.0)) == 1
    assert launches_of(emu, lambda: ops.activation(x, "tanh", 0.0)) == 1
    assert launches_of(emu, lambda: ops.bce_with_logits(x, None, 1.0, 1)) == 1
    assert launches_of(emu, lambda: ops.logit_loss(x, 1.0, "hinge", 1)) == 1


# DCGAN-64's BatchNorm layers (channels, spatial size) at batch 128, ngf = ndf = 64.
DCGAN64_BN_LAYERS = [(512, 4), (256, 8), (128, 16), (64, 32)]


def shared_conflict_degrees(emu, fn):
    """Wavefronts per shared-memory request of each launch fn makes (launches without shared
    memory are left out)."""
    before = emu.stats()["launches"]
    fn()
    launches = emu.stats()["launches"] - before
    log = emu.shared_stats_per_launch()[-launches:] if launches else []
    return [d["wavefronts"] / d["requests"] for d in log if d["requests"]]


@pytest.mark.parametrize("channels,size", DCGAN64_BN_LAYERS, ids=lambda v: str(v))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_no_shared_memory_bank_conflicts_on_dcgan_layers(emu, ops, channels, size, layout, dtype):
    """At most 2 wavefronts per shared-memory request in every kernel of a training step's
    BatchNorm+activation (forward, backward), as the GPU's banks would serve them; the NHWC
    reductions' [row][channel][value] layout used to cost 4-16 wavefronts."""
    g = torch.Generator().manual_seed(12)
    x = make((128, channels, size, size), dtype, layout, g)
    weight, bias, rm, rv = bn_params(channels, g)
    nbt = torch.tensor(0, dtype=torch.long)
    out = {}

    def forward():
        out["y"], out["mean"], out["var"] = ops.batch_norm_act(x, weight, bias, rm, rv, nbt, True, 0.1, EPS, "relu",
                                                               0.0)

    degrees = shared_conflict_degrees(emu, forward)
    degrees += shared_conflict_degrees(emu, lambda: ops.batch_norm_act_backward(
        x, x, weight, bias, out["mean"], out["var"], True, EPS, "relu", 0.0))
    degrees += shared_conflict_degrees(emu, lambda: ops.batch_norm_stats(x))
    assert len(degrees) == 3, "statistics, backward reduction and SyncBatchNorm statistics use shared memory"
    assert max(degrees) <= 2.0, degrees


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_no_shared_memory_bank_conflicts_in_linear_and_loss_kernels(emu, ops, dtype):
    """The MLP GAN's Linear layers (batch 128, 1024 and 784 features) and the losses over a batch of logits."""
    for features in (1024, 784, 13):
        x, y = torch.randn(128, features).to(dtype), torch.randn(128, features).to(dtype)
        degrees = shared_conflict_degrees(emu, lambda: ops.bias_act_backward(x, y, "leaky_relu", 0.2))
        assert degrees and max(degrees) <= 2.0, (features, degrees)
    logits = torch.randn(300_000).to(dtype)
    degrees = shared_conflict_degrees(emu, lambda: ops.logit_loss(logits, 1.0, "hinge", 1))
    assert degrees and max(degrees) <= 2.0, degrees


def test_kernels_reach_shared_memory_only_through_the_counting_accessor():
    """csrc/cuda declares shared arrays with FASTGAN_SHARED alone, so the emulation sees (and
    counts, and bounds-checks) every shared access."""
    from pathlib import Path

    cuda = Path(__file__).resolve().parent.parent / "csrc" / "cuda"
    raw = [f"{f.name}:{n}" for f in sorted(cuda.iterdir()) if f.name != "runtime.cuh"
           for n, line in enumerate(f.read_text().splitlines(), 1) if "__shared__" in line]
    assert not raw, f"declare shared memory with FASTGAN_SHARED: {raw}"


def finish_rounds_of(emu, fn):
    """The most rounds of loads any warp ran in series in the last-block folds of fn's launches
    (csrc/cuda/common.cuh fold_partials: one L2 round trip each), and fn's result."""
    emu.reset_stats()
    out = fn()
    return emu.stats()["finish_rounds"], out


@pytest.fixture
def h200(emu):
    """The emulated device as an H200 (132 SMs): the planners size grids, and so splits, from it."""
    emu.set_device(132)
    yield
    emu.set_device(132)


@pytest.mark.parametrize("channels,size", DCGAN64_BN_LAYERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype,layout", [(torch.float32, "contiguous"), (torch.bfloat16, "channels_last")],
                         ids=["fp32-nchw", "bf16-nhwc"])
def test_reductions_finish_in_at_most_two_rounds(emu, ops, h200, channels, size, dtype, layout):
    """Each channel tile's last block adds the tile's partials in at most 2 rounds of loads
    (each lane 8 loads in flight, one L2 round trip a round) on every DCGAN-64 BatchNorm layer at
    batch 128. In channels_last a tile used to hold up to 256 channels, folded by one block a warp
    per channel: 8-32 rounds in series per warp."""
    g = torch.Generator().manual_seed(13)
    x = make((128, channels, size, size), dtype, layout, g)
    weight, bias, rm, rv = bn_params(channels, g)
    nbt = torch.tensor(0, dtype=torch.long)
    rounds, (_, mean, var) = finish_rounds_of(
        emu, lambda: ops.batch_norm_act(x, weight, bias, rm, rv, nbt, True, 0.1, EPS, "relu", 0.0))
    assert 1 <= rounds <= 2, f"statistics: {rounds} rounds"
    rounds, _ = finish_rounds_of(
        emu, lambda: ops.batch_norm_act_backward(x, x, weight, bias, mean, var, True, EPS, "relu", 0.0))
    assert 1 <= rounds <= 2, f"backward reduce: {rounds} rounds"
    rounds, _ = finish_rounds_of(emu, lambda: ops.batch_norm_stats(x))
    assert 1 <= rounds <= 2, f"SyncBatchNorm statistics: {rounds} rounds"


@pytest.mark.parametrize("features", [256, 512, 784, 1024], ids=str)
@pytest.mark.parametrize("batch", [64, 128, 4096], ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bias_gradient_finishes_in_at_most_two_rounds(emu, ops, h200, features, batch, dtype):
    """bias_act_backward's bias gradient at the MLP GAN's sizes (and a batch large enough for many
    row splits): at most 2 rounds of loads in its last blocks' folds (0 with one split: no fold)."""
    g = torch.Generator().manual_seed(14)
    dy = torch.randn(batch, features, generator=g).to(dtype)
    y = torch.randn(batch, features, generator=g).to(dtype)
    rounds, (_, grad_bias) = finish_rounds_of(emu, lambda: ops.bias_act_backward(dy, y, "leaky_relu", 0.2))
    assert rounds <= 2, f"{rounds} rounds"
    if batch == 4096:
        assert rounds >= 1, "many row splits: the last blocks fold"
    expected = reference.activation_backward(dy.double(), y.double(), "leaky_relu", 0.2).sum(0)
    assert_close(grad_bias, expected, dtype, scale=4)


def test_reduction_counters_are_per_host_thread_on_the_per_thread_stream(emu, ops):
    """cudaStreamPerThread is one handle for a different stream in each host thread, so two
    threads' reductions run concurrently on it: each thread must get counters of its own (keyed by
    the handle, they shared them; two concurrent launches then mixed their tickets and left a
    counter non-zero, which broke every later call on that key). Here two threads on their
    per-thread streams reduce concurrently and every result is the single-threaded one."""
    import threading

    x = torch.randn(4, 8, 64, 64)

    def tickets_seen_by_a_thread(per_thread):
        out = {}

        def run():
            emu.use_per_thread_stream(per_thread)
            out["ptr"] = emu.ticket_buffer(x).data_ptr()

        t = threading.Thread(target=run)
        t.start()
        t.join()
        return out["ptr"]

    assert tickets_seen_by_a_thread(True) != tickets_seen_by_a_thread(True), "per-thread streams share counters"
    assert tickets_seen_by_a_thread(False) == tickets_seen_by_a_thread(False), "the legacy stream is one stream"

    inputs = [torch.randn(4, 8, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    expected = [ops.batch_norm_stats(xi) for xi in inputs]
    errors = []

    def worker(i):
        try:
            emu.use_per_thread_stream(True)
            for _ in range(8):
                mean, var = ops.batch_norm_stats(inputs[i])
                assert torch.equal(mean, expected[i][0]) and torch.equal(var, expected[i][1]), f"thread {i}"
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_statistics_of_huge_values(ops, layout):
    """Means near 1e20 in fp32: a Welford merge into an empty accumulator once computed
    d*d*0 = inf*0 = NaN. The partials are now sums of x - shift around the channel's first
    element; fewer elements per channel than threads still leaves some threads' sums empty."""
    g = torch.Generator().manual_seed(8)
    x = (1e20 * (1 + 0.01 * torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64))).float()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    mean, var = ops.batch_norm_stats(x)
    rmean, rvar = reference.batch_norm_stats(x.double())
    assert torch.isfinite(mean).all() and torch.isfinite(var).all(), (mean, var)
    torch.testing.assert_close(mean.double(), rmean, rtol=1e-5, atol=0)
    torch.testing.assert_close(var.double(), rvar, rtol=1e-3, atol=0)


def test_next_pow2_does_not_overflow(emu):
    assert [emu.next_pow2(v) for v in (0, 1, 3, 32, 33)] == [1, 1, 4, 32, 64]
    assert emu.next_pow2((1 << 31) + 1) == 1 << 32  # an int used to overflow here and loop forever
    assert emu.next_pow2((1 << 40) - 5) == 1 << 40


# --- Synchronised BatchNorm's split ops --------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 64, 4, 4), (4, 2, 64, 64)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_sync_batch_norm_ops(emu, ops, shape, layout, dtype):
    g = torch.Generator().manual_seed(9)
    x = make(shape, dtype, layout, g)
    grad_out = make(shape, dtype, layout, g, shift=0.0)
    weight, bias, *_ = bn_params(shape[1], g, stats_dtype(dtype))
    sdt = stats_dtype(dtype)
    mean, var = repeat_identical(emu, lambda: ops.batch_norm_stats(x))
    rmean, rvar = reference.batch_norm_stats(x.double())
    assert_close(mean, rmean, sdt, scale=4)
    assert_close(var, rvar, sdt, scale=4)
    sum_dy, sum_dy_xmu = repeat_identical(emu, lambda: ops.batch_norm_act_backward_reduce(
        grad_out, x, weight, bias, mean, var, EPS, "leaky_relu", 0.2))
    r_dy, r_dy_xmu = reference.batch_norm_act_backward_reduce(grad_out.double(), x.double(), weight.double(),
                                                              bias.double(), mean.double(), var.double(), EPS,
                                                              "leaky_relu", 0.2)
    assert_close(sum_dy, r_dy, sdt, scale=4)
    assert_close(sum_dy_xmu, r_dy_xmu, sdt, scale=4)
    count = shape[0] * shape[2] * shape[3]
    gx = ops.batch_norm_act_backward_elemt(grad_out, x, weight, bias, mean, var, sum_dy / count,
                                           sum_dy_xmu / count, EPS, "leaky_relu", 0.2)
    rgx = reference.batch_norm_act_backward_elemt(grad_out.double(), x.double(), weight.double(), bias.double(),
                                                  mean.double(), var.double(), r_dy / count, r_dy_xmu / count, EPS,
                                                  "leaky_relu", 0.2)
    check_layout(gx, x)
    assert_close(gx, rgx, dtype, scale=2)
