"""Training steps of the GAN code people write, stock against fastgan.fuse of the very same
model: a CycleGAN-style ResNet generator with a PatchGAN discriminator (InstanceNorm throughout,
forward-written residual blocks; LSGAN losses, one D and one G update) at 128 px, batch 1 and 4,
and an SN-GAN discriminator step (spectral-normalised convs with LeakyReLU(0.1), hinge loss) at
32 px, batch 64. fp32 and bf16 autocast (SN-GAN: fp32). Each fastgan variant records the ratio of alternating
rounds against its stock twin."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import fastgan
from conftest import DEVICE, QUICK, paired_ratio

WIDTH = 8 if QUICK else 32  # CycleGAN's ngf / ndf is 64: half of it keeps a CPU step near a second
SIZE = 32 if QUICK else 128


class ResnetBlock(nn.Module):
    """CycleGAN's residual block, as its code writes it: a Sequential branch added in forward."""

    def __init__(self, c):
        super().__init__()
        self.branch = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
        return x + self.branch(x)


def resnet_generator(w, blocks=6):
    """c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-3 (Zhu et al. 2017), forward-written where
    CycleGAN's code is: down/up-sampling as conv -> InstanceNorm -> ReLU runs."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
    for m in (1, 2):
        layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), nn.InstanceNorm2d(w * m * 2), nn.ReLU(True)]
    layers += [ResnetBlock(w * 4) for _ in range(blocks)]
    for m in (4, 2):
        layers += [nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(w * m // 2),
                   nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patchgan(w):
    """The 70x70 PatchGAN: C64 (no norm) - C128 - C256 - C512 (stride 1), InstanceNorm and
    LeakyReLU(0.2), then a 1-channel map of logits."""
    layers = [nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for i, (m, stride) in enumerate([(2, 2), (4, 2), (8, 1)]):
        prev = w * (1 if i == 0 else m // 2)
        layers += [nn.Conv2d(prev, w * m, 4, stride, 1), nn.InstanceNorm2d(w * m), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(w * 8, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


def cyclegan_step(variant, precision, batch):
    torch.manual_seed(0)
    g, d = resnet_generator(WIDTH).to(DEVICE), patchgan(WIDTH).to(DEVICE)
    if variant == "fastgan":
        g, d = fastgan.fuse(g), fastgan.fuse(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    source = torch.rand(batch, 3, SIZE, SIZE, device=DEVICE) * 2 - 1
    target = torch.rand(batch, 3, SIZE, SIZE, device=DEVICE) * 2 - 1
    autocast = torch.autocast(DEVICE, torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            fake = g(source)
            real_logits, fake_logits = d(target), d(fake.detach())
            loss_d = 0.5 * (F.mse_loss(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
                            + F.mse_loss(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32)))
        opt_d.zero_grad(set_to_none=False)
        loss_d.backward()
        opt_d.step()
        with autocast:
            logits = d(fake)
            loss_g = F.mse_loss(logits.float(), torch.ones_like(logits, dtype=torch.float32))
        opt_g.zero_grad(set_to_none=False)
        loss_g.backward()
        opt_g.step()

    return step


def sn_discriminator():
    """SN-GAN's CIFAR discriminator (Miyato et al. 2018): spectral-normalised 3x3 / 4x4 convs
    with LeakyReLU(0.1), 64 to 512 channels, and a spectral-normalised linear head."""
    w = 8 if QUICK else 64
    chans = [(3, w, 3, 1), (w, w, 4, 2), (w, 2 * w, 3, 1), (2 * w, 2 * w, 4, 2), (2 * w, 4 * w, 3, 1),
             (4 * w, 4 * w, 4, 2), (4 * w, 8 * w, 3, 1)]
    layers = []
    for cin, cout, k, s in chans:
        layers += [spectral_norm(nn.Conv2d(cin, cout, k, s, 1)), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers, nn.Flatten(), spectral_norm(nn.Linear(8 * w * 4 * 4, 1)))


def sngan_d_step(variant, precision):
    torch.manual_seed(0)
    d = sn_discriminator().to(DEVICE)
    if variant == "fastgan":
        d = fastgan.fuse(d)
    opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    batch = 8 if QUICK else 64
    real = torch.rand(batch, 3, 32, 32, device=DEVICE) * 2 - 1
    fake = torch.rand(batch, 3, 32, 32, device=DEVICE) * 2 - 1
    autocast = torch.autocast(DEVICE, torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = F.relu(1 - d(real).float()).mean() + F.relu(1 + d(fake).float()).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def run_step(measure, make, group, variant, rounds):
    step = make(variant)
    step()  # warm-up: oneDNN primitives, autocast caches
    extra = {}
    if variant == "fastgan":
        stock = make("stock")
        stock()
        extra.update(paired_ratio(stock, step, inner=1, rounds=rounds))
    measure(step, group=group, variant=f"{variant}-eager", kind="step", inner=1, rounds=rounds, **extra)


# bf16 at batch 1 only: on this project's 2-core CPU stock PyTorch's bf16-autocast step of this
# model takes 7.4 s against 0.23 s in fp32 (a slow path of torch's), and batch 4 would take minutes.
@pytest.mark.parametrize("batch,precision", [(1, "fp32"), (4, "fp32"), (1, "bf16")], ids=["1-fp32", "4-fp32", "1-bf16"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_cyclegan_step(measure, variant, batch, precision):
    run_step(measure, lambda v: cyclegan_step(v, precision, batch),
             f"step CycleGAN-{SIZE} ResNet-6 G + PatchGAN D, width {WIDTH}, batch {batch} {precision}", variant,
             rounds=3 if batch == 4 else 5)


# fp32 only: on this project's 2-core CPU a bf16-autocast SN-GAN D step takes about 19 s in stock
# PyTorch (fastgan's: 17 s), against 0.7 s in fp32, a slow path of torch's, not fastgan's.
@pytest.mark.parametrize("precision", ["fp32"])
@pytest.mark.parametrize("variant", ["stock", "fastgan"])
def test_sngan_d_step(measure, variant, precision):
    run_step(measure, lambda v: sngan_d_step(v, precision), f"step SN-GAN D-32 batch {8 if QUICK else 64} {precision}",
             variant, rounds=5)
