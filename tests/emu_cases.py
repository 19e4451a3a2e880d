"""What the emulated-kernel tests (test_cuda_emu*.py) share: the cases they sweep, inputs, and
the check that a kernel gives the same bits under every thread and block order."""
import torch

ACTS = [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0), ("identity", 0.0), ("sigmoid", 0.0)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
EPS = 1e-5
# (shape, what it exercises). With fp32, the vector width is 4 elements (8 for fp16/bf16).
SHAPES = [
    ((2, 3, 5, 7), "scalar path: neither H*W nor C a multiple of the vector width"),
    ((2, 64, 4, 4), "vector path in both layouts"),
    ((2, 1, 6, 8), "one channel"),
    ((2, 1000, 2, 2), "1000 channels: many channel blocks"),
    ((4, 2, 64, 64), "many blocks per channel: split statistics"),
]


def stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def make(shape, dtype, layout, generator, offset=False, scale=1.5, shift=0.5):
    x = (torch.randn(shape, dtype=torch.float64, generator=generator) * scale + shift).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if offset:  # the same strides over storage that starts one element past a 16-byte boundary
        base = torch.empty(x.numel() + 1, dtype=dtype)
        x = base[1:].as_strided(x.shape, x.stride()).copy_(x)
    return x


def bn_params(C, g, dtype=torch.float32):
    weight = (torch.randn(C, generator=g) * 0.5 + 1).to(dtype)
    bias = (torch.randn(C, generator=g) * 0.5).to(dtype)
    running_mean = torch.randn(C, generator=g).to(dtype)
    running_var = (torch.rand(C, generator=g) + 0.5).to(dtype)
    return weight, bias, running_mean, running_var


def repeat_identical(emu, fn, runs=3):
    """fn() under several thread/block orders; every run must give the same bits."""
    results = []
    for seed in range(runs):
        emu.set_seed(1000 + seed)
        results.append(fn())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b), "results differ between thread/block orders: a missing barrier or a race"
    return results[0]


def check_layout(out, like):
    assert out.shape == like.shape and out.dtype == like.dtype
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)


def launches_of(emu, fn):
    before = emu.stats()["launches"]
    fn()
    return emu.stats()["launches"] - before
