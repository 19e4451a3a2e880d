"""fuse() on layers whose weight is a parametrization (torch.nn.utils.parametrizations:
spectral_norm, as SN-GAN, SAGAN and BigGAN discriminators use it, and weight_norm): they fuse,
the weight computed as stock computes it once per call, so outputs, gradients and spectral
norm's power-iteration buffers u and v match the stock model's in float64, in training and eval."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from fastgan.fuse import plan
from fastgan.fuse_graph import traced_chains
from helpers import assert_trains_like_stock, randomised_copy_and_fused


def sn_discriminator():
    """An SN-GAN discriminator: spectral-normalised convs with LeakyReLU(0.1), a spectral-normalised
    conv -> BatchNorm -> LeakyReLU, and a spectral-normalised Linear head."""
    return nn.Sequential(
        spectral_norm(nn.Conv2d(3, 8, 3, 1, 1)), nn.LeakyReLU(0.1),
        spectral_norm(nn.Conv2d(8, 16, 4, 2, 1)), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
        weight_norm(nn.ConvTranspose2d(16, 8, 4, 2, 1)), nn.ReLU(),
        nn.Flatten(), spectral_norm(nn.Linear(8 * 8 * 8, 4)), nn.LeakyReLU(0.1))


class ForwardWrittenSN(nn.Module):
    """conv -> BatchNorm -> leaky_relu written in forward(), the conv spectral-normalised by `sn`
    (the parametrization by default; torch.nn.utils.spectral_norm is the old-style hook)."""

    def __init__(self, sn=spectral_norm):
        super().__init__()
        self.conv = sn(nn.Conv2d(3, 4, 3, 1, 1))
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return F.leaky_relu(self.bn(self.conv(x)), 0.2)


def test_sn_discriminator_fuses_and_trains_like_stock(backend):
    torch.manual_seed(12)
    stock, fused = randomised_copy_and_fused(sn_discriminator)
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == \
        ["conv_act", "conv_bn_act", "conv_act", "module", "linear_act"]
    assert_trains_like_stock(stock, fused, (4, 3, 8, 8), (4, 3, 8, 8))  # u and v are buffers: compared


def test_forward_written_spectral_norm_fuses(backend):
    torch.manual_seed(13)
    stock, fused = randomised_copy_and_fused(ForwardWrittenSN)
    assert traced_chains(fused) == [("conv_bn_act", ["conv", "bn"])]
    assert_trains_like_stock(stock, fused, (4, 3, 6, 6), (4, 3, 6, 6))


@pytest.mark.parametrize("make", [sn_discriminator], ids=["sn-discriminator"])
def test_buffers_are_the_parametrizations(make):
    names = [n for n, _ in make().named_buffers()]
    assert any(n.endswith("_u") for n in names) and any(n.endswith("_v") for n in names), names


def old_style_sn_discriminator():
    """The same discriminator on torch.nn.utils.spectral_norm, the older API (a forward pre-hook
    computes the weight from weight_orig, u and v on every call), as much published GAN code uses."""
    sn = torch.nn.utils.spectral_norm
    return nn.Sequential(
        sn(nn.Conv2d(3, 8, 3, 1, 1)), nn.LeakyReLU(0.1),
        sn(nn.Conv2d(8, 16, 4, 2, 1)), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
        nn.Flatten(), sn(nn.Linear(16 * 4 * 4, 4)), nn.LeakyReLU(0.1))


def test_old_style_spectral_norm_fuses_and_trains_like_stock(backend):
    torch.manual_seed(14)
    stock, fused = randomised_copy_and_fused(old_style_sn_discriminator)
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == \
        ["conv_act", "conv_bn_act", "module", "linear_act"]
    assert_trains_like_stock(stock, fused, (4, 3, 8, 8), (4, 3, 8, 8))  # weight_u, weight_v: buffers, compared
    torch.manual_seed(15)
    stock, fused = randomised_copy_and_fused(lambda: ForwardWrittenSN(torch.nn.utils.spectral_norm))
    assert traced_chains(fused) == [("conv_bn_act", ["conv", "bn"])]
    assert_trains_like_stock(stock, fused, (4, 3, 6, 6), (4, 3, 6, 6))


def test_hooks_are_honoured_or_the_module_stays_stock(backend):
    """A chain's conv runs its pre-hooks (a replaced input included); a module with a forward hook,
    which needs the module's own output, and a norm or activation with any hook inside a would-be
    chain run stock, so that every hook is called as often, and sees what, it would in stock."""
    import fastgan

    def make():
        model = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 2, 3, 1, 1), nn.Tanh())
        return model.double()

    seen = {"stock": [], "fused": []}

    def hooked(tag):
        model = make()
        model[0].register_forward_pre_hook(lambda m, args: (args[0] * 2,))
        model[4].register_forward_hook(lambda m, args, out: seen[tag].append(out.detach().clone()))
        model[7].register_forward_pre_hook(lambda m, args: seen[tag].append(args[0].detach().clone()))
        return model

    torch.manual_seed(16)
    stock = hooked("stock")
    fused = hooked("fused")
    fused.load_state_dict(stock.state_dict())
    fastgan.fuse(fused)
    assert [kind for _, kind, _, _ in plan(list(fused._modules.values()))] == \
        ["conv_bn_act", "module", "module", "module", "module", "module"]
    report = "\n".join(fastgan.fuse_report(fused))
    assert "it has a forward hook, which needs its own output" in report, report
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fused(x), stock(x), rtol=1e-12, atol=1e-12)
    assert len(seen["fused"]) == len(seen["stock"]) == 2
    for a, b in zip(seen["fused"], seen["stock"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
