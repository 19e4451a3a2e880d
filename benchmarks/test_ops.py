"""Per-op benchmarks: each fused op against the stock nn.* sequence it replaces, at the
DCGAN layer shapes, forward and forward+backward, NCHW and channels_last, fp32 and bf16.
Each group holds the stock and the fastgan variant, timed side by side."""
import pytest
import torch
from torch import nn

import fastgan
import fastgan.functional as FF
from conftest import DEVICE, DTYPES, LAYOUTS, QUICK, SIZES, paired_ratio

B, S, W = SIZES["op_batch"], SIZES["image"], SIZES["width"]
DT = {"fp32": torch.float32, "bf16": torch.bfloat16}


def layer_shapes():
    """(name, channels, spatial) of the BatchNorm layers of DCGAN at this image size."""
    stages = {32: 3, 64: 4, 128: 5}[S]
    g = [(f"G{i}", W * 2 ** (stages - 1 - i), 4 * 2 ** i) for i in range(stages)]
    d = [(f"D{i}", W * 2 ** i, S // 2 ** (i + 1)) for i in range(1, stages)]
    return g + d


def make_input(c, hw, dtype, layout, requires_grad):
    x = torch.randn(B, c, hw, hw, device=DEVICE, dtype=DT[dtype])
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


def run_case(measure, name, fns, x, mode, dtype, layout, variant, bytes_per_elem_passes):
    """fns: {"stock": fn, "fastgan": fn}, each a function of x. The fastgan variant also records
    the ratio of alternating stock/fastgan rounds (conftest.paired_ratio), which the report
    prefers to the ratio of the two variants' separately timed medians. Each variant's backward
    gets the same gradient values in the memory format of its own output, as the layer after it
    in a network would return them (stock's InstanceNorm returns NCHW for channels_last input)."""
    with torch.no_grad():
        outputs = {v: fn(x) for v, fn in fns.items()}
    grad = torch.randn_like(outputs["stock"], memory_format=torch.contiguous_format)
    grads = {v: grad.contiguous(memory_format=torch.channels_last) if out.dim() == 4
             and out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous() else grad
             for v, out in outputs.items()}
    run_timed(measure, calls_of(fns, x, mode, grads), variant, group=f"op {name} {mode} {dtype} {layout}",
              min_bytes=bytes_per_elem_passes[mode] * max(x.numel(), grad.numel()) * x.element_size())


def calls_of(fns, x, mode, grad=None):
    """{variant: a call of fns[variant] on x}: forward without autograd for mode "fwd", else
    forward and backward (grad None: a scalar output's implicit gradient; a dict: each variant's)."""
    def call(fn, grad):
        def fwd():
            with torch.no_grad():
                fn(x)

        def fwd_bwd():
            fn(x).backward(grad)

        return fwd if mode == "fwd" else fwd_bwd

    return {variant: call(fn, grad[variant] if isinstance(grad, dict) else grad) for variant, fn in fns.items()}


def run_timed(measure, calls, variant, group, inner=None, rounds=None, **extra):
    """Times calls[variant]; for fastgan, also alternating rounds against calls["stock"], and for
    stock-compile (torch.compile of the stock path) alternating rounds against calls["fastgan"]:
    each paired ratio, fastgan's time / the other's, is recorded on the row of the variant it
    compares fastgan with. inner, rounds: calls per round and rounds (None: measure's defaults;
    5 and 25 paired)."""
    if variant in ("fastgan", "stock-compile"):
        other = "stock" if variant == "fastgan" else variant
        for warm_up in (calls[other], calls["fastgan"]):  # torch.compile compiles at its first call
            warm_up()
        extra.update(paired_ratio(calls[other], calls["fastgan"], inner=inner or 5, rounds=rounds or 25))
    measure(calls[variant], group=group, variant=variant, kind="op", inner=inner, rounds=rounds, **extra)


def per_batch_norm_layer(test):
    """Every BatchNorm layer of DCGAN at this size, forward and forward+backward, each dtype and
    layout, stock and fastgan."""
    for name, values, kwargs in [("variant", ["stock", "fastgan"], {}),
                                 ("shape", layer_shapes(), {"ids": lambda s: s[0]}),
                                 ("mode", ["fwd", "fwd+bwd"], {}), ("dtype", DTYPES, {}), ("layout", LAYOUTS, {})]:
        test = pytest.mark.parametrize(name, values, **kwargs)(test)
    return test


def run_batch_norm_case(measure, label, stock_after, act, slope, variant, shape, mode, dtype, layout):
    """BatchNorm2d then stock_after (a module, or None for none) against fastgan's batch_norm_act
    with act; the fewest passes over the activation: fwd reads x and writes y; bwd reads dy and
    x, writes dx."""
    name, c, hw = shape
    bn = nn.BatchNorm2d(c).to(DEVICE)
    x = make_input(c, hw, dtype, layout, mode != "fwd")
    fns = {"stock": bn if stock_after is None else lambda t: stock_after(bn(t)),
           "fastgan": lambda t: FF.batch_norm_act(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, True,
                                                  bn.momentum, bn.eps, act, slope, bn.num_batches_tracked)}
    run_case(measure, f"{label} {name} {c}x{hw}x{hw}", fns, x, mode, dtype, layout, variant, {"fwd": 2, "fwd+bwd": 5})


@per_batch_norm_layer
def test_bn_act(measure, variant, shape, mode, dtype, layout):
    """BatchNorm2d + ReLU (G) or LeakyReLU (D): the fused statistics/normalise/activate."""
    act, slope = ("relu", 0.0) if shape[0].startswith("G") else ("leaky_relu", 0.2)
    stock_act = nn.ReLU() if act == "relu" else nn.LeakyReLU(slope)
    run_batch_norm_case(measure, f"bn+{act}", stock_act, act, slope, variant, shape, mode, dtype, layout)


@per_batch_norm_layer
def test_bn_alone(measure, variant, shape, mode, dtype, layout):
    """BatchNorm2d with no activation after it (the GAN zoos' discriminator blocks end in one):
    fastgan.fuse runs it in the fused kernels with the identity; this says whether that pays."""
    run_batch_norm_case(measure, "bn alone", None, "identity", 0.0, variant, shape, mode, dtype, layout)


def instance_norm_shapes():
    """(name, channels, spatial, batch) of CycleGAN's InstanceNorm layers at 128 px, where
    batch 1 (its default) and 4 are the usual: the first block and a residual block's."""
    scale = 4 if QUICK else 1
    return [("CycleGAN-128 first", 64, 128 // scale, 1), ("CycleGAN-128 residual", 256, 32 // scale, 4)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", instance_norm_shapes(), ids=lambda s: s[0])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_in_act(measure, variant, shape, mode, dtype, layout):
    """InstanceNorm2d(affine) + ReLU, stock against fastgan.fuse's run of the same modules (the
    fused BatchNorm kernels over (1, N*C, H, W); a batch of one channels_last image in place)."""
    name, c, hw, batch = shape
    stock = nn.Sequential(nn.InstanceNorm2d(c, affine=True), nn.ReLU()).to(DEVICE).to(DT[dtype])
    x = torch.randn(batch, c, hw, hw, device=DEVICE, dtype=DT[dtype])
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(mode != "fwd")
    run_case(measure, f"in+relu {name} {batch}x{c}x{hw}x{hw}", {"stock": stock, "fastgan": fastgan.fuse(stock)}, x,
             mode, dtype, layout, variant, {"fwd": 2, "fwd+bwd": 5})


def batch_norm_1d_widths():
    """The "vanilla" GAN generators' Linear -> BatchNorm1d(o, 0.8) -> LeakyReLU(0.2) blocks
    (PyTorch-GAN's gan.py, cgan.py, ...): their widest (1024) and narrowest (256) BatchNorm1d."""
    return [256] if QUICK else [256, 1024]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("width", batch_norm_1d_widths())
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_bn1d_act(measure, variant, width, mode, dtype):
    """BatchNorm1d(width, eps=0.8) + LeakyReLU(0.2) on (batch, width) rows, stock against
    fastgan.fuse's run of the same modules (the fused BatchNorm kernels on (N, C, 1, 1))."""
    stock = nn.Sequential(nn.BatchNorm1d(width, 0.8), nn.LeakyReLU(0.2)).to(DEVICE).to(DT[dtype])
    x = torch.randn(SIZES["batch"], width, device=DEVICE, dtype=DT[dtype]).requires_grad_(mode != "fwd")
    run_case(measure, f"bn1d+leaky_relu {SIZES['batch']}x{width}", {"stock": stock, "fastgan": fastgan.fuse(stock)}, x,
             mode, dtype, "rows", variant, {"fwd": 2, "fwd+bwd": 5})


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("which", ["G-out tanh", "D-in leaky_relu"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_conv_act(measure, variant, which, mode, dtype, layout):
    """The layers without BatchNorm: conv_transpose + tanh (G's last), conv + leaky_relu (D's first)."""
    if which.startswith("G"):
        conv = nn.ConvTranspose2d(W, 3, 4, 2, 1, bias=False)
        stock, cin, hw = nn.Sequential(conv, nn.Tanh()), W, S // 2
    else:
        conv = nn.Conv2d(3, W, 4, 2, 1, bias=False)
        stock, cin, hw = nn.Sequential(conv, nn.LeakyReLU(0.2)), 3, S
    stock = stock.to(DEVICE).to(DT[dtype])
    x = make_input(cin, hw, dtype, layout, mode != "fwd")
    run_case(measure, f"conv+act {which}", {"stock": stock, "fastgan": fastgan.fuse(stock)}, x, mode, dtype, layout,
             variant, {"fwd": 2, "fwd+bwd": 5})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("which", ["G-out 1024x784 tanh", "D-in 784x512 leaky_relu"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_linear_act(measure, variant, which, mode, dtype):
    """The MLP GAN's layers: Linear + Tanh (G's last), Linear + LeakyReLU (D's first)."""
    if which.startswith("G"):
        stock = nn.Sequential(nn.Linear(1024, 784), nn.Tanh())
    else:
        stock = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2))
    stock = stock.to(DEVICE).to(DT[dtype])
    x = torch.randn(SIZES["batch"], stock[0].in_features, device=DEVICE, dtype=DT[dtype], requires_grad=mode != "fwd")
    run_case(measure, f"linear+act {which}", {"stock": stock, "fastgan": fastgan.fuse(stock)}, x, mode, dtype, "rows",
             variant, {"fwd": 2, "fwd+bwd": 5})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "bwd"])
@pytest.mark.parametrize("which", ["D-in 512 leaky_relu", "G-out 784 tanh"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_bias_act(measure, variant, which, mode, dtype):
    """A Linear layer's work around its matrix product, which is the same BLAS/cuBLAS call on
    both sides: stock adds the bias (addmm) then runs the activation, and its backward runs the
    activation's backward and sums the bias gradient; fastgan's bias_act and bias_act_backward
    kernels each do it in one pass."""
    width = int(which.split()[1])
    act, slope = ("leaky_relu", 0.2) if "leaky" in which else ("tanh", 0.0)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    y = torch.randn(SIZES["batch"], width, device=DEVICE, dtype=DT[dtype], generator=g)
    b = torch.randn(width, device=DEVICE, dtype=DT[dtype], generator=g)
    out = fastgan.reference.bias_act(y, b, act, slope)
    grad = torch.randn_like(out)
    stock_act = torch.nn.functional.leaky_relu if act == "leaky_relu" else lambda t, _: torch.tanh(t)
    stock_backward = (lambda: torch.ops.aten.leaky_relu_backward(grad, out, slope, True)) if act == "leaky_relu" \
        else (lambda: torch.ops.aten.tanh_backward(grad, out))
    calls = {"fwd": {"stock": lambda: stock_act(y + b, slope),
                     "fastgan": lambda: torch.ops.fastgan.bias_act(y, b, act, slope)},
             "bwd": {"stock": lambda: stock_backward().sum(0),
                     "fastgan": lambda: torch.ops.fastgan.bias_act_backward(grad, out, act, slope)}}[mode]
    # Fewest passes: fwd reads y and writes the output; bwd reads grad and output, writes g.
    run_timed(measure, calls, variant, group=f"op bias+act {which} {mode} {dtype} rows",
              min_bytes=(2 if mode == "fwd" else 3) * y.numel() * y.element_size())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_bce(measure, variant, mode, dtype):
    """The GAN loss on a batch of logits, target 1.0."""
    x = torch.randn(SIZES["batch"], device=DEVICE, dtype=DT[dtype], requires_grad=mode != "fwd")
    stock_loss, fused_loss = nn.BCEWithLogitsLoss(), fastgan.nn.BCEWithLogitsLoss()
    fns = {"stock": lambda t: stock_loss(t, torch.ones_like(t)), "fastgan": lambda t: fused_loss(t, 1.0)}
    run_timed(measure, calls_of(fns, x, mode), variant, group=f"op bce {mode} {dtype}",
              min_bytes=2 * x.numel() * x.element_size())
