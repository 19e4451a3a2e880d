"""StyleGAN's ops (fastgan.stylegan) against their stock-op reference path (impl="ref", the
path NVlabs' and rosinality's code falls back to when its plugins fail to build), forward and
forward+backward, fp32 and bf16, NCHW and channels_last, at StyleGAN2 feature-map shapes: the
upsample of a synthesis layer, the blur after its transposed convolution, a discriminator's
downsample, bias_act with lrelu and clamp 256 as the synthesis layers call it, and StyleGAN3's
filtered_lrelu (2x up and down, 12-tap separable filters), each also against torch.compile of its
reference path (stock-compile, paired with fastgan in alternating rounds); and one training step
with R1 of fastgan.models' compact StyleGAN2, both paths on the same weights."""
import functools

import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICE, DTYPES, LAYOUTS, QUICK, SIZES
from fastgan.models import StyleGAN2Discriminator, StyleGAN2Generator
from fastgan.stylegan import bias_act as ba
from fastgan.stylegan import filtered_lrelu as fl
from fastgan.stylegan import upfirdn2d as fir
from test_ops import DT, calls_of, run_timed

B = SIZES["op_batch"] if QUICK else 8
# (channels, resolution): StyleGAN2's 512 channels at 4 to 32 px, 256 at 64 px (the larger layers'
# reference calls take seconds each on a CPU in bf16).
SHAPES = [(8, 8)] if QUICK else [(512, 4), (512, 8), (512, 16), (512, 32), (256, 64)]
BLUR = fir.setup_filter([1, 3, 3, 1], device=DEVICE)
LOWPASS = fir.setup_filter(torch.hann_window(14, periodic=False)[1:-1], device=DEVICE)  # 12 taps, separable

OPS = {
    "upsample2d": lambda x, impl: fir.upsample2d(x, BLUR, impl=impl),
    "blur": lambda x, impl: fir.filter2d(x, BLUR, padding=1, gain=4, impl=impl),
    "downsample2d": lambda x, impl: fir.downsample2d(x, BLUR, impl=impl),
    "bias_act": lambda x, impl: ba.bias_act(x, x.new_ones(x.shape[1]), act="lrelu", clamp=256, impl=impl),
    # (2W + 21 - 12 + 1 - 12) // 2 + 1 = W: the size a StyleGAN3 layer keeps
    "filtered_lrelu": lambda x, impl: fl.filtered_lrelu(x, LOWPASS, LOWPASS, x.new_ones(x.shape[1]), up=2, down=2,
                                                        padding=[10, 11, 10, 11], clamp=256, impl=impl),
}


# torch.compile of the reference path, one compiled function per op (each op's own code object,
# hence partial, not a shared lambda): each shape, dtype, layout and grad mode is a graph of its
# own (dynamic=False: no shape-generic kernels), which dynamo keeps side by side up to its
# recompile limit per code object, raised here to hold an op's 40.
COMPILED = {op: torch.compile(functools.partial(fn, impl="ref"), dynamic=False) for op, fn in OPS.items()}
for limit in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
    if hasattr(torch._dynamo.config, limit):
        setattr(torch._dynamo.config, limit, max(64, getattr(torch._dynamo.config, limit)))
        break


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}px")
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("variant", ["stock", "stock-compile", "fastgan"])
def test_stylegan_op(measure, variant, op, shape, mode, dtype, layout):
    if variant == "stock-compile" and QUICK and (mode, dtype, layout) != ("fwd+bwd", "fp32", "nchw"):
        pytest.skip("quick mode compiles the reference path forward+backward in fp32 NCHW only (seconds a graph)")
    c, hw = shape
    x = torch.randn(B, c, hw, hw, device=DEVICE, dtype=DT[dtype])
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(mode != "fwd")
    fns = {"stock": lambda t: OPS[op](t, "ref"), "fastgan": lambda t: OPS[op](t, None)}
    if variant == "stock-compile":
        fns["stock-compile"] = COMPILED[op]
    with torch.no_grad():
        grad = torch.randn_like(fns["stock"](x))
    # Each call here takes tens to hundreds of milliseconds on a CPU: fewer, single-call rounds.
    inner, rounds = (None, None) if DEVICE == "cuda" else (1, 9)
    group = f"op stylegan {op} {c}x{hw}px {mode} {dtype} {layout}"
    run_timed(measure, calls_of(fns, x, mode, grad), variant, group=group, inner=inner, rounds=rounds)


STEP = dict(img_resolution=16, channel_base=256, channel_max=16) if QUICK else dict(
    img_resolution=32, channel_base=4096, channel_max=128)
STEP_BATCH = 4 if QUICK else 8


def stylegan2_step(impl, dtype):
    """One StyleGAN2 training step's computation: G's loss through D, D's loss on real and fake
    with the R1 penalty (a second-order gradient through D), all backward."""
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=128, w_dim=128, mapping_layers=4, impl=impl, **STEP).to(DEVICE, DT[dtype])
    D = StyleGAN2Discriminator(impl=impl, **STEP).to(DEVICE, DT[dtype])
    z = torch.randn(STEP_BATCH, 128, device=DEVICE, dtype=DT[dtype])
    real = torch.randn(STEP_BATCH, 3, STEP["img_resolution"], STEP["img_resolution"], device=DEVICE, dtype=DT[dtype])

    def step():
        fake = G(z)
        real_r = real.detach().requires_grad_()
        real_logits = D(real_r)
        (r1,) = torch.autograd.grad(real_logits.sum(), real_r, create_graph=True)
        loss = (F.softplus(-D(fake)).mean() + F.softplus(D(fake.detach())).mean() + F.softplus(-real_logits).mean()
                + r1.square().sum([1, 2, 3]).mean())
        loss.backward()

    return step


# On a CPU the step runs in fp32 only: stock bf16 grouped convolutions (the modulated
# convolutions, the same on both paths) take about 18 s a step on this project's CPU.
@pytest.mark.parametrize("dtype", DTYPES if DEVICE == "cuda" else ["fp32"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_stylegan2_step(measure, variant, dtype):
    calls = {"stock": stylegan2_step("ref", dtype), "fastgan": stylegan2_step(None, dtype)}
    inner, rounds = (None, None) if DEVICE == "cuda" else (1, 7)
    run_timed(measure, calls, variant, group=f"step StyleGAN2-{STEP['img_resolution']} batch {STEP_BATCH} R1 {dtype}",
              inner=inner, rounds=rounds, batch=STEP_BATCH)
