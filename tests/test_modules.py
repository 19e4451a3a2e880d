"""Modules, models, fuse(): same function and same state_dict as the stock models."""

import pytest
import torch
from torch import nn

import fastgan
from fastgan.models import Discriminator, Generator, weights_init
from helpers import assert_close, assert_trains_like_stock, randomise_bn, randomised_copy_and_fused


def tutorial_generator(nz, ngf, nc):
    """The PyTorch DCGAN tutorial's Generator (64x64), written out as the tutorial does."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


def tutorial_discriminator(ndf, nc):
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())


class TutorialG(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = tutorial_generator(nz, ngf, nc)


class TutorialD(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = tutorial_discriminator(ndf, nc)


def test_state_dict_keys_are_the_tutorials():
    g, tg = Generator(nz=16, ngf=4, nc=3), TutorialG(16, 4, 3)
    d, td = Discriminator(ndf=4, nc=3), TutorialD(4, 3)
    assert list(g.state_dict()) == list(tg.state_dict())
    assert list(d.state_dict()) == list(td.state_dict())
    # Checkpoints load both ways without conversion.
    g.load_state_dict(tg.state_dict())
    tg.load_state_dict(g.state_dict())
    d.load_state_dict(td.state_dict())


@pytest.mark.parametrize("image_size", [32, 64, 128])
def test_model_shapes(backend, image_size):
    g, d = Generator(nz=8, ngf=4, nc=3, image_size=image_size), Discriminator(ndf=4, nc=3, image_size=image_size)
    img = g(torch.randn(2, 8))
    assert img.shape == (2, 3, image_size, image_size)
    assert d(img).shape == (2,)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_models_match_stock(backend, device, train, layout):
    torch.manual_seed(0)
    g, d = Generator(nz=8, ngf=4, nc=3).to(device).double(), Discriminator(ndf=4, nc=3).to(device).double()
    g.apply(weights_init), d.apply(weights_init)
    tg, td = TutorialG(8, 4, 3).to(device).double(), TutorialD(4, 3).to(device).double()
    tg.load_state_dict(g.state_dict()), td.load_state_dict(d.state_dict())
    for m in (g, d, tg, td):
        m.train(train)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    z = torch.randn(4, 8, 1, 1, device=device, dtype=torch.float64)
    fake, tfake = g(z), tg.main(z)
    assert_close(fake, tfake, torch.float64)
    x = fake.detach().contiguous(memory_format=fmt)
    logits, tlogits = d(x), td.main[:-1](x).view(-1)  # the tutorial's D without its Sigmoid
    assert_close(logits, tlogits, torch.float64)
    (logits.sum() + fake.sum()).backward()
    (tlogits.sum() + tfake.sum()).backward()
    for (name, p), tp in zip(list(g.named_parameters()) + list(d.named_parameters()),
                             list(tg.parameters()) + list(td.parameters())):
        assert_close(p.grad, tp.grad, torch.float64, scale=10, msg=name)
    for (name, b), tb in zip(list(g.named_buffers()) + list(d.named_buffers()),
                             list(tg.buffers()) + list(td.buffers())):
        assert_close(b, tb, torch.float64, msg=name)


def test_generator_wrong_latent_size():
    with pytest.raises(ValueError, match=r"nz=|\(N, 8\)"):
        Generator(nz=8, ngf=4)(torch.randn(2, 7))


def test_unsupported_image_size():
    with pytest.raises(ValueError, match="image_size must be one of"):
        Generator(image_size=48)


def test_discriminator_wrong_image_shape():
    with pytest.raises(ValueError, match="expects images of shape"):
        Discriminator(ndf=4, image_size=32)(torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("cls,args,stock", [
    (fastgan.nn.ConvTranspose2dBNReLU, (6, 4, 4, 2, 1),
     lambda: nn.Sequential(nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU())),
    (fastgan.nn.Conv2dBNLeakyReLU, (6, 4, 4, 2, 1),
     lambda: nn.Sequential(nn.Conv2d(6, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.2))),
    (fastgan.nn.Conv2dLeakyReLU, (6, 4, 3, 1, 1),
     lambda: nn.Sequential(nn.Conv2d(6, 4, 3, 1, 1, bias=False), nn.LeakyReLU(0.2))),
    (fastgan.nn.ConvTranspose2dTanh, (6, 4, 4, 2, 1),
     lambda: nn.Sequential(nn.ConvTranspose2d(6, 4, 4, 2, 1, bias=False), nn.Tanh())),
])
def test_layers_are_drop_in(backend, device, cls, args, stock):
    torch.manual_seed(1)
    fused, ref = cls(*args).to(device).double(), stock().to(device).double()
    for m in fused.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomise_bn(m)
    assert list(fused.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(fused.state_dict())
    for _ in range(3):
        x = torch.randn(3, 6, 8, 8, device=device, dtype=torch.float64)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = fused(x1), ref(x2)
        assert_close(y1, y2, torch.float64)
        y1.square().sum().backward(), y2.square().sum().backward()
        assert_close(x1.grad, x2.grad, torch.float64)
        for p1, p2 in zip(fused.parameters(), ref.parameters()):
            assert_close(p1.grad, p2.grad, torch.float64, scale=10)
    for b1, b2 in zip(fused.buffers(), ref.buffers()):
        assert_close(b1, b2, torch.float64)


def test_fuse_keeps_state_dict_and_function(backend):
    torch.manual_seed(2)
    model = TutorialG(8, 4, 3).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomise_bn(m)
    fused = fastgan.fuse(model)
    assert type(model.main) is nn.Sequential  # the original is untouched
    assert isinstance(fused.main, fastgan.FusedSequential)
    assert list(fused.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, fused.state_dict()[k])
    z = torch.randn(3, 8, 1, 1, dtype=torch.float64)
    assert_close(fused.main(z), model.main(z), torch.float64)
    # Stock Sequential at the top level works too, and unfusable runs stay stock.
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Sigmoid())
    fseq = fastgan.fuse(seq)
    assert isinstance(fseq, fastgan.FusedSequential)
    x = torch.randn(2, 3, 9, 9)
    assert_close(fseq(x), seq(x), torch.float32)


def test_fused_path_is_really_used():
    """With the compiled module loaded, the models run fastgan ops, not the stock ones."""
    if fastgan.backend() != "fused":
        pytest.skip("reference backend")
    g = Generator(nz=8, ngf=4, image_size=32)
    with torch.profiler.profile() as prof:
        g(torch.randn(2, 8)).sum().backward()
    names = {e.name for e in prof.events()}
    assert "fastgan::batch_norm_act" in names and "fastgan::activation" in names
    assert "aten::native_batch_norm" not in names and "aten::batch_norm" not in names


class _Doubled(nn.Module):
    def forward(self, weight):
        return 2 * weight


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.LeakyReLU(0.2)),
    lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh()),
], ids=["conv_bn_act", "conv_act", "linear_act"])
def test_parameters_swapped_or_parametrized_after_the_first_call_are_used(backend, make):
    """The fused hot path reads the children's parameter dicts (not Module.__getattr__): a
    parameter replaced, or turned into a parametrization's property, after the plan was made
    must still be the one the layer computes with, and get its gradient."""
    torch.manual_seed(3)
    stock = make().double()
    fused = fastgan.fuse(stock)
    x = torch.randn(2, 5, dtype=torch.float64) if isinstance(stock[0], nn.Linear) else \
        torch.randn(2, 3, 6, 6, dtype=torch.float64)
    fused(x)  # the plan is made and cached here
    for model in (stock, fused):
        model[0].weight = nn.Parameter(model[0].weight.detach() * 0.5)
    assert_close(fused(x), stock(x), torch.float64, msg="replaced weight")
    for model in (stock, fused):
        nn.utils.parametrize.register_parametrization(model[0], "weight", _Doubled())
    assert_close(fused(x), stock(x), torch.float64, msg="parametrized weight")
    fused(x).sum().backward()
    stock(x).sum().backward()
    original = [m[0].parametrizations.weight.original.grad for m in (stock, fused)]
    assert original[1] is not None
    assert_close(original[1], original[0], torch.float64, msg="gradient of the parametrization's original")


def vanilla_generator(momentum):
    """The "vanilla" and conditional GAN generators of the GAN zoos, written out as they are:
    Linear -> BatchNorm1d(out, 0.8) (eps 0.8, as written there) -> LeakyReLU(0.2), then a
    Linear -> BatchNorm1d -> ReLU block with the default eps and the given momentum."""
    return nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16, 0.8), nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(16, 32), nn.BatchNorm1d(32, momentum=momentum), nn.ReLU(),
        nn.Linear(32, 6), nn.Tanh())


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_linear_batch_norm1d_act_matches_stock(backend, momentum):
    """Forward, the input's and parameters' gradients, and the running statistics over three
    training steps and in eval, in float64; the plan fuses both Linear -> BatchNorm1d blocks."""
    from fastgan.fuse import plan
    torch.manual_seed(4)
    stock, fused = randomised_copy_and_fused(lambda: vanilla_generator(momentum))
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == \
        ["linear_bn_act", "linear_bn_act", "linear_act"]
    assert_trains_like_stock(stock, fused, (5, 8), (1, 8))  # a batch of one is fine in eval
    if fastgan.backend() == "fused":  # and the BatchNorm1d ran in fastgan's kernels, not torch's
        fused.train()
        with torch.profiler.profile() as prof:
            fused(torch.randn(4, 8, dtype=torch.float64))
        names = {e.name for e in prof.events()}
        assert "fastgan::batch_norm_act" in names and "aten::native_batch_norm" not in names


def test_linear_batch_norm1d_act_falls_back_where_stock_differs(backend):
    torch.manual_seed(5)
    stock = vanilla_generator(0.1).double()
    fused = fastgan.fuse(stock, inplace=False)
    with pytest.raises(ValueError) as stock_error:
        stock(torch.randn(1, 8, dtype=torch.float64))
    with pytest.raises(ValueError) as fused_error:
        fused(torch.randn(1, 8, dtype=torch.float64))
    assert str(fused_error.value) == str(stock_error.value)  # "Expected more than 1 value per channel ..."
    # 3-D input: BatchNorm1d normalises dim 1 of the Linear's (N, L, C) output; the stock modules run.
    block = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(3), nn.ReLU()).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    assert_close(fastgan.fuse(block, inplace=False)(x), block(x), torch.float64)


def zoo_discriminator():
    """The DCGAN-family discriminator block of the GAN zoos: Conv2d, LeakyReLU, Dropout2d,
    BatchNorm2d(out, 0.8): a BatchNorm with no activation after it."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(0.0),
        nn.Conv2d(8, 16, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(0.0), nn.BatchNorm2d(16, 0.8))


def zoo_generator_body():
    """A generator opening with BatchNorm2d (after the Linear and the view in its forward),
    then Upsample, Conv2d, BatchNorm2d(out, 0.8), LeakyReLU; a residual branch's Conv -> BatchNorm."""
    return nn.Sequential(
        nn.BatchNorm2d(4), nn.Upsample(scale_factor=2), nn.Conv2d(4, 8, 3, 1, 1), nn.BatchNorm2d(8, 0.8),
        nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 3, 1, 1),
        nn.Tanh())


def linear_batch_norm1d_body():
    """Linear -> BatchNorm1d without an activation, and a BatchNorm1d over (N, C, L)."""
    return nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Unflatten(1, (2, 2)), nn.BatchNorm1d(2),
                         nn.ReLU())


BATCH_NORM_WITHOUT_ACTIVATION = [
    (zoo_discriminator, (4, 3, 8, 8), ["conv_act", "module", "conv_act", "module", "bn_act"]),
    (zoo_generator_body, (4, 4, 4, 4), ["bn_act", "module", "conv_bn_act", "conv_bn_act", "conv_act"]),
    (linear_batch_norm1d_body, (5, 6), ["linear_bn_act", "module", "bn_act"]),
]


@pytest.mark.parametrize("make,shape,kinds", BATCH_NORM_WITHOUT_ACTIVATION,
                         ids=["zoo-discriminator", "zoo-generator", "linear-batchnorm1d"])
def test_batch_norm_without_activation_matches_stock(backend, make, shape, kinds):
    """A BatchNorm with no activation after it runs fused with the identity: outputs, gradients
    and running statistics as stock's over three training steps and in eval (float64)."""
    from fastgan.fuse import plan
    torch.manual_seed(6)
    stock, fused = randomised_copy_and_fused(make)
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == kinds
    assert_trains_like_stock(stock, fused, shape, shape)


def sigmoid_heads():
    """Sigmoid heads of the GAN zoos: Linear -> Sigmoid fed to BCELoss, a ConvTranspose2d ->
    Sigmoid decoder, and a BatchNorm2d -> Sigmoid."""
    return nn.Sequential(nn.ConvTranspose2d(3, 4, 4, 2, 1), nn.Sigmoid(), nn.BatchNorm2d(4), nn.Sigmoid(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3), nn.Sigmoid())


def test_sigmoid_heads_fuse_and_train_like_stock(backend):
    from fastgan.fuse import plan
    torch.manual_seed(14)
    stock, fused = randomised_copy_and_fused(sigmoid_heads)
    assert [(kind, act) for _, kind, act, _ in plan(list(fused._modules.values()))] == \
        [("conv_act", "sigmoid"), ("bn_act", "sigmoid"), ("module", None), ("linear_act", "sigmoid")]
    assert_trains_like_stock(stock, fused, (5, 3, 4, 4), (5, 3, 4, 4))
