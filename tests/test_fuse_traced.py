"""fuse() on models whose forward() calls their layers one by one (torch.fx tracing,
fastgan/fuse_graph.py): every conv/linear -> norm -> activation chain is fused, the model
trains like its stock twin in float64, its state_dict is unchanged, unfuse() restores it, a
forward that cannot be traced keeps its own (with one warning) while its children are fused,
and fuse_report() says which is which."""
import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
from fastgan.fuse import plan
from fastgan.fuse_graph import traced_chains
from helpers import assert_close, assert_trains_like_stock, randomised_copy_and_fused


class ForwardWrittenD(nn.Module):
    """A DCGAN discriminator written out in forward(), with functional and module activations."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 4, 2, 1)
        self.conv2 = nn.Conv2d(8, 16, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.act = nn.LeakyReLU(0.2)
        self.fc = nn.Linear(16 * 4 * 4, 1)

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), 0.2, inplace=True)
        x = self.act(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class ResBlock(nn.Module):
    """A residual block: conv -> BN -> ReLU, conv -> BN (no activation), plus the input; the
    first BN's output is used once, the second conv's output only by its BN."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return x + self.bn2(self.conv2(h))


class ForwardWrittenG(nn.Module):
    """Linear -> BatchNorm1d -> ReLU in forward, a view, residual blocks in a ModuleList, a
    transposed conv -> InstanceNorm -> x.relu(), and a conv -> tanh head."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn0 = nn.Linear(6, 8 * 4 * 4), nn.BatchNorm1d(8 * 4 * 4)
        self.blocks = nn.ModuleList([ResBlock(8), ResBlock(8)])
        self.up, self.norm = nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.InstanceNorm2d(4, affine=True)
        self.head = nn.Conv2d(4, 3, 3, 1, 1)

    def forward(self, z):
        x = F.relu(self.bn0(self.fc(z))).view(-1, 8, 4, 4)
        for block in self.blocks:
            x = block(x)
        x = self.norm(self.up(x)).relu()
        return torch.tanh(self.head(x))


class SharedIntermediate(nn.Module):
    """The BatchNorm's output is used twice: conv -> BN fuses with no activation; the ReLU stays."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        h = self.bn(self.conv(x))
        return F.relu(h) + h


class Untraceable(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it; its block can be. Its own
    conv -> ReLU stays stock (so fuse warns)."""

    def __init__(self):
        super().__init__()
        self.block = ResBlock(3)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        if x.mean() > 100:  # never true here; fx cannot know
            return x
        return torch.relu(self.head(self.block(x)))


class ModeDependent(nn.Module):
    """A forward that branches on self.training: a trace would freeze one branch."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4)
        self.block = ResBlock(4)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if self.training:
            x = x * 2
        return self.block(x)


MODELS = [
    (ForwardWrittenD, (4, 3, 16, 16), {"": [("conv_act", ["conv1"]), ("conv_bn_act", ["conv2", "bn2"])]}),
    (ForwardWrittenG, (4, 6), {"": [("linear_bn_act", ["fc", "bn0"])] + [
        (kind, [f"blocks.{i}.{n}" for n in names]) for i in range(2)
        for kind, names in [("conv_bn_act", ["conv1", "bn1"]), ("conv_bn_act", ["conv2", "bn2"])]]
        + [("conv_in_act", ["up", "norm"]), ("conv_act", ["head"])]}),
    (SharedIntermediate, (4, 3, 6, 6), {"": [("conv_bn_act", ["conv", "bn"])]}),
]


class UnetBlock(nn.Module):
    """pix2pix's U-Net block, written from its description: LeakyReLU(0.2) -> stride-2 conv ->
    norm, the inner block, ReLU -> stride-2 transposed conv -> norm, and the block's input
    concatenated with its output (the skip connection); the outermost block ends in Tanh instead."""

    def __init__(self, outer, inner, norm, submodule=None, outermost=False, in_channels=None):
        super().__init__()
        in_channels = in_channels or outer
        down = [nn.Conv2d(in_channels, inner, 4, 2, 1, bias=False)]
        up_in = inner * 2 if submodule is not None else inner
        if outermost:
            layers = down + [submodule, nn.ReLU(), nn.ConvTranspose2d(up_in, outer, 4, 2, 1), nn.Tanh()]
        elif submodule is None:  # innermost: no norm after the down conv
            layers = [nn.LeakyReLU(0.2)] + down + [nn.ReLU(), nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=False),
                                                   norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2)] + down + [norm(inner), submodule, nn.ReLU(),
                                                   nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=False), norm(outer)]
        self.outermost = outermost
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def pix2pix_unet(norm):
    block = UnetBlock(8, 8, norm)
    block = UnetBlock(4, 8, norm, block)
    return UnetBlock(3, 4, norm, block, outermost=True, in_channels=3)


@pytest.mark.parametrize("norm", [nn.BatchNorm2d, nn.InstanceNorm2d], ids=["batch", "instance"])
def test_pix2pix_unet_fuses_and_trains_like_stock(backend, norm):
    torch.manual_seed(17)
    stock, fused = randomised_copy_and_fused(lambda: pix2pix_unet(norm))
    kinds = [kind for m in fused.modules() if isinstance(m, fastgan.FusedSequential)
             for _, kind, _, _ in plan(list(m._modules.values())) if kind != "module"]
    # Every conv -> norm, the innermost down conv with the ReLU after it, and the head's
    # transposed conv -> Tanh run fused.
    expected = {nn.BatchNorm2d: ["conv_bn_act"] * 3 + ["conv_act"] * 2,
                nn.InstanceNorm2d: ["conv_in_act"] * 3 + ["conv_act"] * 2}[norm]
    assert sorted(kinds) == sorted(expected)
    assert list(fused.state_dict()) == list(stock.state_dict())
    assert_trains_like_stock(stock, fused, (2, 3, 8, 8), (2, 3, 8, 8))


@pytest.mark.parametrize("make,shape,chains", MODELS, ids=["forward-D", "forward-G", "shared-intermediate"])
def test_forward_written_models_fuse_and_train_like_stock(backend, make, shape, chains):
    torch.manual_seed(7)
    stock, fused = randomised_copy_and_fused(make)
    assert {path: traced_chains(fused.get_submodule(path)) for path in chains} == chains
    assert list(fused.state_dict()) == list(stock.state_dict())
    assert_trains_like_stock(stock, fused, shape, shape)


def test_untraceable_forward_keeps_its_own_and_its_children_fuse(backend):
    torch.manual_seed(8)
    stock = Untraceable().double()
    with pytest.warns(UserWarning, match="the forward of Untraceable could not be traced"):
        fused = fastgan.fuse(stock)
    assert "forward" not in fused.__dict__ and "forward" in fused.block.__dict__
    assert traced_chains(fused.block) == [("conv_bn_act", ["conv1", "bn1"]), ("conv_bn_act", ["conv2", "bn2"])]
    assert_trains_like_stock(stock, fused, (4, 3, 6, 6), (4, 3, 6, 6))


def test_forward_that_branches_on_training_mode_is_not_traced(backend):
    torch.manual_seed(11)
    stock = ModeDependent().double()
    with pytest.warns(UserWarning, match="the forward of ModeDependent could not be traced"):
        fused = fastgan.fuse(stock)
    assert "forward" not in fused.__dict__ and traced_chains(fused.block)
    assert any("branches on the training mode" in line for line in fastgan.fuse_report(fused))
    assert_trains_like_stock(stock, fused, (4, 3, 6, 6), (4, 3, 6, 6))  # in eval too


def test_no_warning_where_nothing_stays_stock():
    """fastgan's own Generator checks its input's shape in forward (not traceable), but all its
    layers are in a Sequential, fused already: nothing to warn about."""
    from fastgan.models import Generator
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = fastgan.fuse(Generator(nz=8, ngf=4, nc=3, image_size=32))
    assert any("forward not traceable" in line for line in fastgan.fuse_report(fused))


def test_unfuse_and_copies(backend):
    torch.manual_seed(9)
    stock, fused = randomised_copy_and_fused(ForwardWrittenD)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    twin = copy.deepcopy(fused)  # its traced forward runs its own modules, not fused's
    with torch.no_grad():
        twin.conv2.weight.add_(1.0)
    assert_close(fused(x), stock(x), torch.float64)
    assert not torch.allclose(twin(x), stock(x))
    buffer = io.BytesIO()  # torch.save of the whole model: loaded, it runs its own modules, fused
    torch.save(fused, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert traced_chains(loaded) == traced_chains(fused)
    assert_close(loaded(x), stock(x), torch.float64)
    with torch.no_grad():
        loaded.conv2.weight.add_(1.0)
    assert_close(fused(x), stock(x), torch.float64)
    restored = fastgan.unfuse(fused)
    assert "forward" not in restored.__dict__ and traced_chains(restored) == []
    assert_close(restored(x), stock(x), torch.float64)


def test_report_says_what_is_fused_and_what_stays_stock(backend):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.LeakyReLU(0.2))
    model[3].register_forward_hook(lambda module, args, out: None)
    holder = nn.Module()
    holder.seq, holder.d = model, ForwardWrittenD()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a holder without forward is visited, not traced: no warning
        fused = fastgan.fuse(holder)
    lines = fastgan.fuse_report(fused)
    assert "seq: fused: Conv2d -> BatchNorm2d -> ReLU (conv_bn_act)" in lines
    assert "d.conv2: fused: conv2 -> bn2 -> leaky_relu (conv_bn_act)" in lines
    assert "seq.3 (Conv2d): stock: it has a forward hook, which needs its own output" in lines
    assert any(line.startswith("d.fc (Linear): stock: no norm or activation") for line in lines)


def test_report_names_the_model_itself_where_it_has_no_path(backend):
    fused = fastgan.fuse(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    assert fastgan.fuse_report(fused) == ["Sequential: fused: Conv2d -> BatchNorm2d -> ReLU (conv_bn_act)"]
    lines = fastgan.fuse_report(fastgan.fuse(nn.Conv2d(3, 4, 3)))
    assert lines == ["Conv2d: stock: no norm or activation fuse runs directly after it in a traced or Sequential "
                     "forward"]


def test_traced_model_compiles_without_graph_break(backend):
    torch.manual_seed(10)
    stock, fused = randomised_copy_and_fused(ForwardWrittenG)
    x = torch.randn(4, 6, dtype=torch.float64)
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x), stock(x), torch.float64)
