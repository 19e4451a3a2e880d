"""The models a run trains, built from its TrainConfig, and the sampling helpers that the
trainer, `fastgan sample` and `fastgan fid` share."""
import torch

from ..models import (ConditionalDiscriminator, ConditionalGenerator, Discriminator, Generator, MLPDiscriminator,
                      MLPGenerator, weights_init)
from ..sync_batch_norm import convert_sync_batchnorm
from .config import DTYPES, TrainConfig
from .images import to_uint8


def d_norm(cfg: TrainConfig) -> str:
    """A WGAN-GP critic has no BatchNorm: its penalty is per sample, BatchNorm mixes samples."""
    return "none" if cfg.loss == "wgan-gp" else "batch"


def build_models(cfg: TrainConfig, num_classes: int, device):
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    if cfg.arch == "mlp":  # the tutorial widths at the default ngf = ndf = 32: (256, 512, 1024) and (512, 256)
        g = MLPGenerator(cfg.nz, (cfg.ngf * 8, cfg.ngf * 16, cfg.ngf * 32), shape)
        d = MLPDiscriminator(shape, (cfg.ndf * 16, cfg.ndf * 8))
    elif cfg.conditional:
        g = ConditionalGenerator(num_classes, cfg.nz, cfg.ngf, cfg.channels, cfg.image_size)
        d = ConditionalDiscriminator(num_classes, cfg.ndf, cfg.channels, cfg.image_size, d_norm(cfg))
    else:
        g = Generator(cfg.nz, cfg.ngf, cfg.channels, cfg.image_size)
        d = Discriminator(cfg.ndf, cfg.channels, cfg.image_size, d_norm(cfg))
    g.apply(weights_init), d.apply(weights_init)
    if cfg.sync_bn:
        g, d = convert_sync_batchnorm(g), convert_sync_batchnorm(d)
    g, d = g.to(device, DTYPES[cfg.dtype]), d.to(device, DTYPES[cfg.dtype])
    if cfg.channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    return g, d


@torch.no_grad()
def generate(g, z, labels=None):
    """Samples with batch statistics, as during training, without touching G's running stats."""
    buffers = [b.clone() for b in g.buffers()]
    training = g.training
    g.train()
    out = g(z, labels) if labels is not None else g(z)
    for b, saved in zip(g.buffers(), buffers):
        b.copy_(saved)
    g.train(training)
    return out.float()


@torch.no_grad()
def generated_images(g, nz: int, n: int, batch_size: int, device, num_classes: int = 0, seed: int = 0) -> torch.Tensor:
    """n uint8 images from G in batches (generate's batch statistics), from seeded latents."""
    gen = torch.Generator().manual_seed(seed)
    dtype = next(g.parameters()).dtype
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        z = torch.randn(m, nz, generator=gen).to(device, dtype)
        labels = (torch.arange(i, i + m) % num_classes).to(device) if num_classes else None
        out.append(to_uint8(generate(g, z, labels)))
    return torch.cat(out)


def mean_pairwise_distance(x):
    return torch.pdist(x.flatten(1).float()).mean().item()
