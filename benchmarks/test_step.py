"""One full DCGAN training step (D on real and fake, the G update, Adam) for every
variant, side by side in one process: stock eager, stock torch.compile, fastgan eager,
fastgan with the whole step in one CUDA graph. fp32, plus bf16 autocast + channels_last
(on the CPU too). Also measures the device's ceilings (copy bandwidth, matmul rate) for the roofline."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fastgan
from conftest import CUDA, DEVICE, QUICK, SIZES, paired_ratio
from fastgan.models import Discriminator, Generator, MLPDiscriminator, MLPGenerator, weights_init

B, S, W, NZ = SIZES["batch"], SIZES["image"], SIZES["width"], 100

VARIANTS = ["stock-eager", "stock-compile", "fastgan-eager"]
if CUDA:
    VARIANTS += ["stock-compile-max-autotune-no-cudagraphs", "stock-compile-reduce-overhead", "fastgan-graph"]
PRECISIONS = ["fp32", "bf16-cl"]


def build(variant, precision):
    torch.manual_seed(0)
    g, d = Generator(NZ, W, 3, S).to(DEVICE), Discriminator(W, 3, S).to(DEVICE)
    g.apply(weights_init), d.apply(weights_init)
    if variant.startswith("stock"):
        g, d = fastgan.unfuse(g), fastgan.unfuse(d)  # the very same layers as plain nn.Sequential
    if precision == "bf16-cl":
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    graphed = variant == "fastgan-graph"
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=graphed)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=graphed)
    if variant.startswith("stock-compile"):
        mode = variant.removeprefix("stock-compile").lstrip("-") or None
        g, d = torch.compile(g, mode=mode), torch.compile(d, mode=mode)
    stock_loss = nn.BCEWithLogitsLoss()
    if variant.startswith("stock"):
        def loss(logits, value):
            return stock_loss(logits, torch.full_like(logits, value))
    else:
        loss = fastgan.functional.bce_with_logits
    autocast = torch.autocast(DEVICE, torch.bfloat16, enabled=precision == "bf16-cl")

    def step(real):
        z = torch.randn(real.size(0), NZ, 1, 1, device=DEVICE)
        with autocast:
            opt_d.zero_grad(set_to_none=False)
            fake = g(z)
            loss_d = loss(d(real), 1.0) + loss(d(fake.detach()), 0.0)
        loss_d.backward()
        opt_d.step()
        with autocast:
            opt_g.zero_grad(set_to_none=False)
            loss_g = loss(d(fake), 1.0)
        loss_g.backward()
        opt_g.step()
        return loss_d.detach(), loss_g.detach()

    return step, (opt_g, opt_d)


def real_batch(precision):
    x = torch.rand(B, 3, S, S, device=DEVICE) * 2 - 1
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16-cl" else x


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_train_step(measure, variant, precision):
    step, optimizers = build(variant, precision)
    real = real_batch(precision)
    run = lambda: step(real)  # noqa: E731
    if variant == "fastgan-graph":
        graphed = fastgan.graph.GraphedStep(step, real, optimizers=optimizers)
        run = lambda: graphed(real)  # noqa: E731
    try:
        run()  # compilation happens here, outside the timing
    except Exception as exc:  # a compile mode that fails on this machine is reported, not hidden
        pytest.skip(f"{variant} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    extra = {}
    if variant == "fastgan-eager":  # the eager target's ratio from alternating rounds
        stock_step, _ = build("stock-eager", precision)
        stock_step(real)
        extra.update(paired_ratio(lambda: stock_step(real), run, inner=1 if not CUDA else 5,
                                  rounds=10 if not CUDA else 15))
    if not QUICK and variant == "stock-eager":
        extra.update(step_floor_inputs(precision))
    measure(run, group=f"step DCGAN-{S} batch {B} {precision}", variant=variant, kind="step", batch=B,
            inner=5 if CUDA else 1, rounds=10 if CUDA else 5, **extra)


def mlp_step(variant):
    """One MLP GAN training step (fresh models and optimisers), stock or fastgan."""
    torch.manual_seed(0)
    g, d = MLPGenerator(NZ).to(DEVICE), MLPDiscriminator().to(DEVICE)
    if variant.startswith("stock"):
        g, d = fastgan.unfuse(g), fastgan.unfuse(d)
        stock_loss = nn.BCEWithLogitsLoss()

        def loss(logits, value):
            return stock_loss(logits, torch.full_like(logits, value))
    else:
        loss = fastgan.functional.bce_with_logits
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(B, 1, 28, 28, device=DEVICE) * 2 - 1

    def step():
        opt_d.zero_grad(set_to_none=False)
        fake = g(torch.randn(B, NZ, device=DEVICE))
        (loss(d(real), 1.0) + loss(d(fake.detach()), 0.0)).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=False)
        loss(d(fake), 1.0).backward()
        opt_g.step()

    return step


@pytest.mark.parametrize("variant", ["stock-eager", "fastgan-eager"])
def test_mlp_train_step(measure, variant):
    """The fully-connected GAN of the MNIST tutorials (28x28, G 100-256-512-1024-784, D
    784-512-256-1), one full step: its Linear + activation pairs are fastgan's linear_act."""
    step = mlp_step(variant)
    step()
    extra = {}
    if variant == "fastgan-eager":
        stock_step = mlp_step("stock-eager")
        stock_step()
        extra.update(paired_ratio(stock_step, step, inner=5 if CUDA else 2, rounds=15))
    measure(step, group=f"step MLP-GAN-28 batch {B} fp32", variant=variant, kind="step", batch=B,
            inner=5 if CUDA else 2, rounds=10 if CUDA else 15, **extra)


def step_floor_inputs(precision):
    """FLOPs of one stock step (FlopCounterMode) and the fewest bytes its convolutions must
    move: every conv / conv-backward input and output read or written once."""
    step, _ = build("stock-eager", precision)
    real = real_batch(precision)
    moved = [0]

    class CountBytes(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                for t in torch.utils._pytree.tree_leaves((args, out)):
                    if isinstance(t, torch.Tensor):
                        moved[0] += t.numel() * t.element_size()
            return out

    with FlopCounterMode(display=False) as flops, CountBytes():
        step(real)
    return {"flops": flops.get_total_flops(), "min_bytes": moved[0]}


@pytest.mark.skipif(not CUDA, reason="the roofline is drawn on GPU")
@pytest.mark.parametrize("what", ["copy", "matmul-bf16", "matmul-tf32"])
def test_device_ceiling(measure, what):
    """The two ceilings of the roofline, measured here rather than read off a datasheet."""
    if what == "copy":
        src = torch.randn(2**28, device="cuda")  # 1 GiB
        dst = torch.empty_like(src)
        measure(lambda: dst.copy_(src), group="device ceilings", variant=what, kind="ceiling",
                bytes=2 * src.numel() * 4, inner=10, rounds=5)
    else:
        dtype = torch.bfloat16 if what == "matmul-bf16" else torch.float32
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 convolutions run on TF32 tensor cores by default
        n = 8192
        a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
        measure(lambda: a @ b, group="device ceilings", variant=what, kind="ceiling", flops=2 * n**3, inner=5, rounds=5)
