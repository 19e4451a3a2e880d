"""`fastgan fid`: FID and KID between real images and generated ones, and the image sets it
reads: a data source (`digits`, a folder, a .zip, as `fastgan train --data` takes) or a
training checkpoint whose G generates them."""
import torch

from . import data as data_io
from . import metrics
from .sample import load_generator
from .train import TrainError, generated_images


def is_checkpoint(path: str) -> bool:
    return path.endswith((".pt", ".pth"))


def real_images(source: str, image_size: int, channels: int, n: int, seed: int = 0) -> torch.Tensor:
    """uint8 images of a data source, at most n of them (a seeded random subset)."""
    images = data_io.load(source, image_size, channels, data_io.cache.default_folder()).images
    if images.size(0) > n:
        images = images[torch.randperm(images.size(0), generator=torch.Generator().manual_seed(seed))[:n]]
    return images


def evaluate(inception: str, real: str, fake: str, n: int = 10000, batch_size: int = 64, device: str = "cpu",
             image_size: int = 64, channels: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
             seed: int = 0) -> metrics.Scores:
    """FID/KID of fake (a checkpoint or a data source) against real (a data source). Both sets are
    read at the checkpoint's image size and channels, or at image_size/channels when fake is a
    data source too."""
    metrics.n_images(n)
    if batch_size < 1:
        raise TrainError(f"argument --batch-size: must be >= 1, got {batch_size}")
    if kid_subsets < 1:
        raise TrainError(f"argument --kid-subsets: must be >= 1, got {kid_subsets}")
    if kid_subset_size < 2:
        raise TrainError(f"argument --kid-subset-size: must be >= 2, got {kid_subset_size}")
    net = metrics.load_feature_network(inception, device)  # first: a missing file costs nothing else
    if is_checkpoint(fake):
        g, cfg, classes = load_generator(fake, device)
        image_size, channels = cfg.image_size, cfg.channels
        fake_images = generated_images(g, cfg.nz, n, batch_size, device, len(classes) if cfg.conditional else 0, seed)
    else:
        fake_images = real_images(fake, image_size, channels, n, seed + 1)
    real_set = real_images(real, image_size, channels, n, seed)
    return metrics.scores(metrics.features(net, real_set, batch_size, device),
                          metrics.features(net, fake_images, batch_size, device), kid_subsets, kid_subset_size)
