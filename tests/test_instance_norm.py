"""InstanceNorm2d (+ activation) on the fused BatchNorm kernels: functional.instance_norm_act
against F.instance_norm and the stock activation, and fuse() on the CycleGAN / pix2pix blocks
that use it, in float64 (outputs, gradients, running statistics, eval)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
import fastgan.functional as FF
from fastgan.fuse import plan
from helpers import assert_close, assert_trains_like_stock, randomise_bn, randomised_copy_and_fused, stock_activation

ACTIVATIONS = [("identity", 0.0), ("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0), ("sigmoid", 0.0)]


def stock_instance_norm_act(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, name, slope):
    y = F.instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    return stock_activation(name, slope)(y)


def stats(c, affine, tracked):
    """(running_mean, running_var, weight, bias) in float64, random; None where not used."""
    rm, rv = (torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5) if tracked else (None,) * 2
    w, b = (torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)) if affine else (None,) * 2
    return rm, rv, w, b


@pytest.mark.parametrize("name,slope", ACTIVATIONS)
@pytest.mark.parametrize("affine,tracked", [(True, True), (False, False), (True, False), (False, True)])
def test_functional_matches_stock(backend, name, slope, affine, tracked):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    stock_stats = stats(4, affine, tracked)
    fused_stats = [t.clone() if t is not None else None for t in stock_stats]
    for t in (*stock_stats[2:], *fused_stats[2:]):
        if t is not None:
            t.requires_grad_()
    xs, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_s = stock_instance_norm_act(xs, *stock_stats, True, 0.3, 1e-3, name, slope)
    out_f = FF.instance_norm_act(xf, *fused_stats, True, 0.3, 1e-3, name, slope)
    assert_close(out_f, out_s, torch.float64, msg="output")
    grad = torch.randn_like(out_s)
    out_s.backward(grad), out_f.backward(grad)
    assert_close(xf.grad, xs.grad, torch.float64, msg="input gradient")
    for what, s, f in zip(("running_mean", "running_var", "weight", "bias"), stock_stats, fused_stats):
        if s is not None:
            assert_close(f, s, torch.float64, msg=what)  # the running statistics' update
            if s.requires_grad:
                assert_close(f.grad, s.grad, torch.float64, msg=f"{what} gradient")
    if tracked:  # eval of a tracking InstanceNorm2d: the running statistics normalise
        out_s = stock_instance_norm_act(x, *stock_stats, False, 0.3, 1e-3, name, slope)
        assert_close(FF.instance_norm_act(x, *fused_stats, False, 0.3, 1e-3, name, slope), out_s, torch.float64)


@pytest.mark.parametrize("layout,by_image", [(torch.contiguous_format, False), (torch.channels_last, False),
                                             (torch.channels_last, True)], ids=["nchw", "nhwc", "nhwc-image-by-image"])
def test_double_backward_for_gradient_penalties(backend, monkeypatch, layout, by_image):
    """gradcheck and gradgradcheck of the input, weight and bias (R1 / WGAN-GP differentiate
    through the discriminator's norms), channels_last images also one by one (in place)."""
    if by_image:
        monkeypatch.setattr(FF, "_IMAGE_BY_IMAGE_ELEMENTS", 1)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return FF.instance_norm_act(x, None, None, w, b, True, 0.1, 1e-5, "leaky_relu", 0.2)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("n,c,in_place", [(1, 3, True), (3, 3, False), (3, 4096, True)],
                         ids=["one-image", "small-images", "large-images"])
def test_channels_last_input_gives_stock_result(backend, n, c, in_place):
    """channels_last input: one image, and each image of a batch of large ones (64 Ki elements),
    runs in place (BatchNorm over it) and the result stays channels_last; a batch of small images
    takes stock's copy to NCHW and the result is contiguous. Running statistics are updated with
    the images' mean statistics, as stock's."""
    torch.manual_seed(3)
    x = torch.randn(n, c, 4, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    rm, rv = torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5
    rm_s, rv_s = rm.clone(), rv.clone()
    xf, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = FF.instance_norm_act(xf, rm, rv, w, b, True, 0.1, 1e-5, "relu")
    expected = torch.relu(F.instance_norm(xs, rm_s, rv_s, weight=w, bias=b, use_input_stats=True, momentum=0.1))
    assert_close(out, expected, torch.float64)
    assert_close(rm, rm_s, torch.float64, msg="running_mean")
    assert_close(rv, rv_s, torch.float64, msg="running_var")
    grad = torch.randn_like(expected)
    out.backward(grad), expected.backward(grad)
    assert_close(xf.grad, xs.grad, torch.float64, msg="input gradient")
    assert out.is_contiguous(memory_format=torch.channels_last if in_place else torch.contiguous_format)
    assert out.is_contiguous() != in_place


@pytest.mark.parametrize("call,error,match", [
    (lambda x, c: FF.instance_norm_act(x[0]), ValueError, "InstanceNorm2d expects a 4-D input"),
    (lambda x, c: FF.instance_norm_act(x, weight=torch.ones(c + 1, dtype=x.dtype)), ValueError,
     r"InstanceNorm2d: InstanceNorm weight has shape \(5,\) but the input has 4 channels"),
    (lambda x, c: FF.instance_norm_act(x, running_mean=torch.zeros(c, dtype=x.dtype)), ValueError,
     "give both running_mean and running_var"),
    (lambda x, c: FF.instance_norm_act(x, use_input_stats=False), ValueError, "but none were given"),
    (lambda x, c: FF.instance_norm_act(x[:, :, :1, :1]), ValueError, "Expected more than 1 spatial element"),
    (lambda x, c: FF.instance_norm_act(x, activation="gelu"), ValueError, "unknown activation 'gelu'"),
    (lambda x, c: FF.instance_norm_act(x.long()), TypeError, "floating-point"),
])
def test_bad_input(backend, call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(2, 4, 3, 3, dtype=torch.float64), 4)


def cyclegan_generator(affine=False, tracked=False):
    """CycleGAN's ResNet generator, shortened: reflection padding, Conv -> InstanceNorm -> ReLU,
    a strided conv and a transposed conv each followed by InstanceNorm -> ReLU, a Tanh head."""
    norm = lambda c: nn.InstanceNorm2d(c, affine=affine, track_running_stats=tracked)  # noqa: E731
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), norm(8), nn.ReLU(True),
        nn.Conv2d(8, 16, 3, 2, 1), norm(16), nn.ReLU(True),
        nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), norm(8), nn.ReLU(True),
        nn.ReflectionPad2d(3), nn.Conv2d(8, 3, 7), nn.Tanh())


def patchgan_discriminator(affine=False, tracked=False, momentum=0.1):
    """pix2pix / CycleGAN's PatchGAN: Conv -> LeakyReLU(0.2), then Conv -> InstanceNorm ->
    LeakyReLU(0.2), a 1-channel map of patch logits."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(8, 16, 4, 2, 1), nn.InstanceNorm2d(16, affine=affine, track_running_stats=tracked,
                                                     momentum=momentum),
        nn.LeakyReLU(0.2, True), nn.Conv2d(16, 1, 4, 1, 1))


MODELS = [
    (cyclegan_generator, {}, (2, 3, 16, 16), ["module", "conv_in_act", "conv_in_act", "conv_in_act", "module",
                                              "conv_act"]),
    (cyclegan_generator, {"affine": True, "tracked": True}, (2, 3, 16, 16), None),
    (patchgan_discriminator, {}, (2, 3, 16, 16), ["conv_act", "conv_in_act", "module"]),
    (patchgan_discriminator, {"affine": True, "tracked": True, "momentum": None}, (3, 3, 16, 16), None),
]


@pytest.mark.parametrize("make,kwargs,shape,kinds", MODELS,
                         ids=["cyclegan-G", "cyclegan-G-affine-tracked", "patchgan", "patchgan-affine-cumulative"])
def test_fused_models_train_like_stock(backend, make, kwargs, shape, kinds):
    torch.manual_seed(4)
    stock, fused = randomised_copy_and_fused(lambda: make(**kwargs))
    if kinds is not None:
        assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == kinds
    assert_trains_like_stock(stock, fused, shape, shape)


def test_fused_path_is_really_used():
    if fastgan.backend() != "fused":
        pytest.skip("needs the compiled module")
    fused = fastgan.fuse(patchgan_discriminator(affine=True)).double()
    with torch.profiler.profile() as prof:
        fused(torch.randn(2, 3, 16, 16, dtype=torch.float64))
    names = {e.name for e in prof.events()}
    assert "fastgan::batch_norm_act" in names and "aten::instance_norm" not in names


def test_inputs_instance_norm_treats_otherwise_run_stock(backend):
    """An unbatched (C, H, W) input is fused as a batch of one; a channel count other than
    num_features (stock warns, or refuses with affine) and a 1x1 plane in training run the stock
    module, with its warning and error."""
    torch.manual_seed(5)
    block = nn.Sequential(nn.InstanceNorm2d(4, affine=True), nn.ReLU()).double()
    randomise_bn(block[0])
    fused = fastgan.fuse(block)
    x = torch.randn(4, 5, 6, dtype=torch.float64)
    assert_close(fused(x), block(x), torch.float64)
    with pytest.raises(ValueError, match="to match num_features"):
        fused(torch.randn(2, 3, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        fused(torch.randn(2, 4, 1, 1, dtype=torch.float64))
    loose = fastgan.fuse(nn.Sequential(nn.InstanceNorm2d(4), nn.ReLU()))
    with pytest.warns(UserWarning, match="does not match num_features"):
        loose(torch.randn(2, 3, 5, 6))


def test_fused_model_compiles_without_graph_break(backend):
    torch.manual_seed(6)
    stock, fused = randomised_copy_and_fused(lambda: patchgan_discriminator(affine=True, tracked=True))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x), stock(x), torch.float64)
    assert_close(fused[3].running_mean, stock[3].running_mean, torch.float64)


class ForwardWrittenBlock(nn.Module):
    """A CycleGAN-style block written in forward(): a reflect-padded conv with spectral norm ->
    InstanceNorm -> F.leaky_relu, then a transposed conv called with output_size (not a chain
    fuse may start: the argument would be dropped) -> InstanceNorm."""

    def __init__(self, sn):
        super().__init__()
        self.conv = sn(nn.Conv2d(3, 6, 3, 2, 1, padding_mode="reflect"))
        self.norm = nn.InstanceNorm2d(6, affine=True, track_running_stats=True)
        self.up, self.norm2 = nn.ConvTranspose2d(6, 4, 3, 2, 1), nn.InstanceNorm2d(4)

    def forward(self, x):
        h = F.leaky_relu(self.norm(self.conv(x)), 0.2)
        return self.norm2(self.up(h, output_size=x.shape[-2:]))


@pytest.mark.parametrize("sn", [torch.nn.utils.parametrizations.spectral_norm, torch.nn.utils.spectral_norm],
                         ids=["parametrization", "pre-hook"])
def test_conv_instance_norm_chains_fuse_with_the_conv_as_written(backend, monkeypatch, sn):
    """conv -> InstanceNorm2d -> activation is one chain (conv_in_act) in a Sequential and in a
    traced forward: the conv runs as its own forward (reflect padding, spectral norm's power
    iteration, whose u and v must match stock's after the steps), the norm and activation fused.
    The image-by-image threshold is lowered, so that a channels_last batch reaching a norm runs
    image by image whatever its size."""
    monkeypatch.setattr(FF, "_IMAGE_BY_IMAGE_ELEMENTS", 1)
    torch.manual_seed(8)
    stock, fused = randomised_copy_and_fused(lambda: ForwardWrittenBlock(sn))
    report = fastgan.fuse_report(fused)
    assert any("conv -> norm -> leaky_relu (conv_in_act)" in line for line in report), report
    assert not any("up -> norm2" in line for line in report), report
    assert_trains_like_stock(stock, fused, (2, 3, 10, 10), (2, 3, 10, 10))

    make = lambda: nn.Sequential(  # noqa: E731
        sn(nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect")), nn.InstanceNorm2d(6, affine=True), nn.ReLU(),
        nn.ConvTranspose2d(6, 4, 4, 2, 1), nn.InstanceNorm2d(4), nn.Conv2d(4, 2, 3, padding="same"),
        nn.InstanceNorm2d(2, track_running_stats=True), nn.Sigmoid())
    stock, fused = randomised_copy_and_fused(make)
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == ["conv_in_act"] * 3
    assert_trains_like_stock(stock, fused, (3, 3, 8, 8), (1, 3, 8, 8))
    torch._dynamo.reset()  # this file's other compiled models would count towards the recompile limit
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert_close(compiled(x), stock(x), torch.float64)
    x = x.contiguous(memory_format=torch.channels_last)
    try:  # torch 2.5-2.11 cannot compile a reflect-padded conv on channels_last input before a norm
        torch.compile(stock, fullgraph=True, backend="aot_eager")(x)  # (their meta strides are NCHW)
    except RuntimeError as error:
        assert "view size is not compatible" in str(error), error
    else:
        assert_close(compiled(x), stock(x), torch.float64)
