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
    def __init__(self):
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(3, 4, 3, 1, 1))
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
