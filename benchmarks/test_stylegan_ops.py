"""StyleGAN's ops (fastgan.stylegan) against their stock-op reference path (impl="ref", the
path NVlabs' and rosinality's code falls back to when its plugins fail to build), forward and
forward+backward, fp32 and bf16, NCHW and channels_last, at StyleGAN2 feature-map shapes: the
upsample of a synthesis layer, the blur after its transposed convolution, a discriminator's
downsample, and bias_act with lrelu and clamp 256 as the synthesis layers call it."""
import pytest
import torch

from conftest import DEVICE, DTYPES, LAYOUTS, QUICK, SIZES
from fastgan.stylegan import bias_act as ba
from fastgan.stylegan import upfirdn2d as fir
from test_ops import DT, calls_of, run_timed

B = SIZES["op_batch"] if QUICK else 8
# (channels, resolution): StyleGAN2's 512 channels at 16 and 32 px, 256 at 64 px.
SHAPES = [(8, 8)] if QUICK else [(512, 16), (512, 32), (256, 64)]
F = fir.setup_filter([1, 3, 3, 1], device=DEVICE)

OPS = {
    "upsample2d": lambda x, impl: fir.upsample2d(x, F, impl=impl),
    "blur": lambda x, impl: fir.filter2d(x, F, padding=1, gain=4, impl=impl),
    "downsample2d": lambda x, impl: fir.downsample2d(x, F, impl=impl),
    "bias_act": lambda x, impl: ba.bias_act(x, x.new_ones(x.shape[1]), act="lrelu", clamp=256, impl=impl),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}px")
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_stylegan_op(measure, variant, op, shape, mode, dtype, layout):
    c, hw = shape
    x = torch.randn(B, c, hw, hw, device=DEVICE, dtype=DT[dtype])
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(mode != "fwd")
    fns = {"stock": lambda t: OPS[op](t, "ref"), "fastgan": lambda t: OPS[op](t, None)}
    with torch.no_grad():
        grad = torch.randn_like(fns["stock"](x))
    # Each call here takes tens to hundreds of milliseconds on a CPU: fewer, single-call rounds.
    inner, rounds = (None, None) if DEVICE == "cuda" else (1, 9)
    run_timed(measure, calls_of(fns, x, mode, grad), variant, group=f"stylegan {op} {c}x{hw}px {mode} {dtype} {layout}",
              inner=inner, rounds=rounds)
