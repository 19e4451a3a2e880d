"""Host overhead: what a fused layer costs the host (Python, dispatcher, autograd) against
the stock layers it replaces. On a GPU a DCGAN step is launch-bound, so this decides eager
speed there; it is measured on the CPU with tiny tensors (batch 2, 4 channels, 2x2 and a
DCGAN-32 at width 8), on one thread, so that compute is negligible and host time remains.
Every group holds the stock and the fastgan variant, timed side by side in one process.

The fastgan variant of each case also times the stock one in alternating rounds within its
own test and records the median of the per-round ratios (conftest.paired_ratio).

The last case counts the ops dispatched per training step (TorchDispatchMode) for both."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fastgan
from conftest import paired_ratio
from fastgan.models import Discriminator, Generator, weights_init

GROUP = "host"  # the report reads "host <case>" groups as this table
N, C, HW = 2, 4, 2


def _layers(which):
    """(stock, fastgan) modules holding the same parameters, and the input size."""
    torch.manual_seed(0)
    if which == "convT+bn+relu":
        stock, x = nn.Sequential(nn.ConvTranspose2d(C, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU(True)), HW
    elif which == "conv+bn+leaky_relu":
        stock, x = nn.Sequential(nn.Conv2d(C, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C), nn.LeakyReLU(0.2, True)), HW
    elif which == "conv+leaky_relu":
        stock, x = nn.Sequential(nn.Conv2d(C, C, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, True)), HW
    else:
        stock, x = nn.Sequential(nn.ConvTranspose2d(C, C, 3, 1, 1, bias=False), nn.Tanh()), HW
    return stock, fastgan.fuse(stock), torch.randn(N, C, x, x, requires_grad=True)


@pytest.fixture(autouse=True)
def host_only():
    """One thread: host time, not a thread pool's wake-up, is what is measured. oneDNN off:
    it spends about 35 us building a convolution primitive on every call, the same for both
    variants, which would hide the host overhead; ATen's own convolution takes about 4 us on
    these sizes, close to the cost of a kernel launch on a GPU."""
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    # Only the switch: mkldnn.flags() also sets oneDNN's TF32 mode, which warns on every call
    # in a torch without Intel GPU support.
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = onednn
        torch.set_num_threads(threads)


def _time(measure, fn, case, variant, stock_fn=None, **extra):
    if variant == "fastgan" and stock_fn is not None:
        extra.update(paired_ratio(stock_fn, fn, inner=50, rounds=30))
    measure(fn, group=f"{GROUP} {case}", variant=variant, kind="host", inner=50, rounds=30, **extra)


@pytest.mark.parametrize("variant", ["stock", "fastgan"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("which", ["convT+bn+relu", "conv+bn+leaky_relu", "conv+leaky_relu", "convT+tanh"])
def test_layer(measure, which, mode, variant):
    stock, fused, x = _layers(which)
    grad = torch.randn_like(stock(x))

    def fwd(model):
        def run():
            with torch.no_grad():
                model(x)
        return run

    def fwd_bwd(model):
        return lambda: model(x).backward(grad)

    make = fwd if mode == "fwd" else fwd_bwd
    _time(measure, make(stock if variant == "stock" else fused), f"{which} {mode}", variant, stock_fn=make(stock))


@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_bce(measure, variant):
    x = torch.randn(N, requires_grad=True)
    stock_loss, fused_loss = nn.BCEWithLogitsLoss(), fastgan.nn.BCEWithLogitsLoss()
    stock_fn = lambda: stock_loss(x, torch.ones_like(x)).backward()  # noqa: E731
    fused_fn = lambda: fused_loss(x, 1.0).backward()  # noqa: E731
    _time(measure, stock_fn if variant == "stock" else fused_fn, "bce fwd+bwd", variant, stock_fn=stock_fn)


def make_step(variant):
    """One DCGAN-32 training step at width 8, batch 2: D on real and fake, G, Adam (foreach)."""
    torch.manual_seed(0)
    g, d = Generator(16, 8, 3, 32), Discriminator(8, 3, 32)
    g.apply(weights_init), d.apply(weights_init)
    if variant == "stock":
        g, d = fastgan.unfuse(g), fastgan.unfuse(d)
        stock_loss = nn.BCEWithLogitsLoss()
        loss = lambda logits, value: stock_loss(logits, torch.full_like(logits, value))  # noqa: E731
    else:
        loss = fastgan.functional.bce_with_logits
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    real = torch.rand(2, 3, 32, 32) * 2 - 1

    def step():
        z = torch.randn(2, 16)
        opt_d.zero_grad(set_to_none=False)
        fake = g(z)
        loss_d = loss(d(real), 1.0) + loss(d(fake.detach()), 0.0)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=False)
        loss_g = loss(d(fake), 1.0)
        loss_g.backward()
        opt_g.step()

    return step


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(step):
    step()  # the optimisers' lazy state is made on the first step
    with CountOps() as counter:
        step()
    return counter.count


@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_train_step(measure, variant):
    step = make_step(variant)
    ops = ops_per_step(step)
    extra = {"ops_per_step": ops}
    if variant == "fastgan":
        stock_step = make_step("stock")
        stock_step()
        extra.update(paired_ratio(stock_step, step, inner=5, rounds=40))
    measure(step, group=f"{GROUP} DCGAN-32 step", variant=variant, kind="host", inner=5, rounds=20, **extra)


def test_fastgan_dispatches_fewer_ops_per_step():
    """Not a timing: the op count is exact, so it can be checked here."""
    if fastgan.backend() != "fused":
        pytest.skip("fused backend only")
    stock, fused = ops_per_step(make_step("stock")), ops_per_step(make_step("fastgan"))
    assert fused < stock, (fused, stock)
