"""The DCGAN of the PyTorch DCGAN tutorial, for 32, 64 and 128 pixel images, run through
fused ops. The layers sit in `main` exactly as in the tutorial, so state_dict keys
(main.0.weight, main.1.running_mean, ...) are the tutorial's and checkpoints load either way.
Also the MLP and conditional GANs, and a compact StyleGAN2 (fastgan.stylegan.networks)."""
import math

import torch
from torch import nn

from .fuse import FusedSequential
from .stylegan.networks import StyleGAN2Discriminator, StyleGAN2Generator  # noqa: F401

IMAGE_SIZES = (32, 64, 128)


def _stages(image_size):
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"fastgan: image_size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2  # 4x4 doubled this many times


class Generator(nn.Module):
    """DCGAN's generator (Radford et al., 2016; pytorch/examples' layout, so its checkpoints
    load): a 4x4 transposed conv from the latent, then stride-2 ConvTranspose2d -> BatchNorm2d ->
    ReLU blocks halving the channels, and ConvTranspose2d -> Tanh to the image, all run fused.

    Args:
        nz: the latent size.
        ngf: the channels of the last hidden block (each block before has twice its successor's).
        nc: the image's channels.
        image_size: one of IMAGE_SIZES (the number of blocks follows from it); ValueError otherwise.
    forward(z): latents (N, nz) or (N, nz, 1, 1) -> images (N, nc, image_size, image_size) in
    [-1, 1]. Raises ValueError for latents of another shape."""

    def __init__(self, nz=100, ngf=64, nc=3, image_size=64):
        super().__init__()
        self.nz, self.nc, self.image_size = nz, nc, image_size
        stages = _stages(image_size)
        mult = 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = FusedSequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.size(1) != self.nz or z.shape[2:] != (1, 1):
            raise ValueError(f"fastgan: Generator expects latent vectors of shape (N, {self.nz}) or "
                             f"(N, {self.nz}, 1, 1), got {tuple(z.shape)}")
        return self.main(z)


NORMS = ("batch", "none")


class Discriminator(nn.Module):
    """norm="none" drops BatchNorm (each stage is a biased conv + LeakyReLU, the fused
    conv_act layer): a WGAN-GP critic must not use it, since its gradient penalty is taken per
    sample and BatchNorm mixes the samples of a batch."""

    def __init__(self, ndf=64, nc=3, image_size=64, norm="batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"fastgan: norm must be one of {NORMS}, got {norm!r}")
        self.nc, self.image_size = nc, image_size
        stages = _stages(image_size)
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for _ in range(stages - 1):
            if norm == "batch":
                layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult * 2),
                           nn.LeakyReLU(0.2, inplace=True)]
            else:
                layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            mult *= 2
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False)]
        self.main = FusedSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N,) (the tutorial's Sigmoid is folded into the loss)."""
        expected = (self.nc, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"fastgan: Discriminator expects images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        return self.main(x).view(-1)


class MLPGenerator(nn.Module):
    """The fully-connected GAN generator of the usual PyTorch MNIST tutorials: Linear +
    LeakyReLU(0.2) hidden layers and a Linear + Tanh output, in `model` (state_dict keys
    model.0.weight, model.2.weight, ...), so a tutorial checkpoint loads. Each Linear +
    activation pair runs as one fused linear_act call."""

    def __init__(self, nz=100, hidden=(256, 512, 1024), out_shape=(1, 28, 28)):
        super().__init__()
        self.nz, self.out_shape = nz, tuple(out_shape)
        layers, width = [], nz
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh()]
        self.model = FusedSequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.size(0), -1)
        if z.size(1) != self.nz:
            raise ValueError(f"fastgan: MLPGenerator expects latent vectors of shape (N, {self.nz}), got "
                             f"{tuple(z.shape)}")
        return self.model(z).view(z.size(0), *self.out_shape)


class MLPDiscriminator(nn.Module):
    """The tutorials' fully-connected discriminator, returning logits of shape (N,): their
    final Sigmoid (which has no parameters, so their checkpoints load) is folded into the loss,
    fastgan.nn.BCEWithLogitsLoss, the numerically safe form of Sigmoid + BCELoss."""

    def __init__(self, in_shape=(1, 28, 28), hidden=(512, 256)):
        super().__init__()
        self.in_shape = tuple(in_shape)
        layers, width = [], math.prod(self.in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers += [nn.Linear(width, 1)]
        self.model = FusedSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            shape = ", ".join(map(str, self.in_shape))
            raise ValueError(f"fastgan: MLPDiscriminator expects images of shape (N, {shape}), got {tuple(x.shape)}")
        return self.model(x.reshape(x.size(0), -1)).view(-1)


def weights_init(m: nn.Module) -> None:
    """The tutorial's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ConditionalGenerator(nn.Module):
    """Class-conditional DCGAN generator: a one-hot label joins the latent vector."""

    def __init__(self, num_classes, nz=100, ngf=64, nc=3, image_size=64):
        super().__init__()
        self.num_classes, self.nz = num_classes, nz
        self.net = Generator(nz + num_classes, ngf, nc, image_size)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.size(0), -1)
        if z.size(1) != self.nz:
            raise ValueError(f"fastgan: ConditionalGenerator expects latent vectors of shape (N, {self.nz}), "
                             f"got {tuple(z.shape)}")
        return self.net(torch.cat([z, _one_hot(labels, self.num_classes, z)], 1))


class ConditionalDiscriminator(nn.Module):
    """Class-conditional DCGAN discriminator: one-hot label maps join the image channels."""

    def __init__(self, num_classes, ndf=64, nc=3, image_size=64, norm="batch"):
        super().__init__()
        self.num_classes, self.image_size = num_classes, image_size
        self.net = Discriminator(ndf, nc + num_classes, image_size, norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        maps = _one_hot(labels, self.num_classes, x)[:, :, None, None].expand(-1, -1, x.size(2), x.size(3))
        return self.net(torch.cat([x, maps], 1))


def _one_hot(labels, num_classes, like):
    if labels.dim() != 1 or labels.size(0) != like.size(0):
        raise ValueError(f"fastgan: expected one label per sample, shape ({like.size(0)},), got {tuple(labels.shape)}")
    # Range-checked on the CPU only: on a GPU the check would synchronise every step.
    if labels.device.type == "cpu" and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"fastgan: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(dtype=like.dtype, device=like.device)
