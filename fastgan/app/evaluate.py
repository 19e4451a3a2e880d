"""`fastgan fid`: FID and KID between real images and generated ones, and the image sets it
reads: a data source (`digits`, a folder, a .zip, as `fastgan train --data` takes) or a
training checkpoint whose G generates them. The real side can also be a statistics file
(.npz, pytorch-fid's layout), and `--save-stats` writes one."""
from typing import Optional

import torch

from . import data as data_io
from . import metrics
from .sample import load_generator
from .config import TrainError
from .model_factory import generated_images


def is_checkpoint(path: str) -> bool:
    return path.endswith((".pt", ".pth"))


def real_images(source: str, image_size: int, channels: int, n: int, seed: int = 0) -> torch.Tensor:
    """uint8 images of a data source, at most n of them (a seeded random subset)."""
    images = data_io.load(source, image_size, channels, data_io.cache.default_folder()).images
    if images.size(0) > n:
        images = images[torch.randperm(images.size(0), generator=torch.Generator().manual_seed(seed))[:n]]
    return images


def is_stats_file(path: str) -> bool:
    return path.endswith(".npz")


def evaluate(inception: str, real: str, fake: Optional[str], n: int = 10000, batch_size: int = 64,
             device: str = "cpu", image_size: int = 64, channels: int = 3, kid_subsets: int = 100,
             kid_subset_size: int = 1000, seed: int = 0, save_stats: Optional[str] = None) -> Optional[metrics.Scores]:
    """FID/KID of fake (a checkpoint or a data source) against real (a data source, or a
    statistics file: FID only). Both sets are read at the checkpoint's image size and channels,
    or at image_size/channels when fake is a data source too. save_stats: also write the real
    side's statistics there; with no fake, that is all it does (and it returns None)."""
    metrics.n_images(n)
    if fake is None and save_stats is None:
        raise TrainError("fastgan fid needs --fake (images to score), --save-stats (a file to write the real "
                         "images' statistics to), or both")
    if save_stats is not None and is_stats_file(real):
        raise TrainError(f"argument --save-stats: --real {real!r} is already a statistics file; --save-stats writes "
                         "the statistics of real images")
    if save_stats is not None:
        metrics.check_stats_path(save_stats)
    if batch_size < 1:
        raise TrainError(f"argument --batch-size: must be >= 1, got {batch_size}")
    if kid_subsets < 1:
        raise TrainError(f"argument --kid-subsets: must be >= 1, got {kid_subsets}")
    if kid_subset_size < 2:
        raise TrainError(f"argument --kid-subset-size: must be >= 2, got {kid_subset_size}")
    net = metrics.load_feature_network(inception, device)  # first: a missing file costs nothing else
    real_stats = metrics.load_stats(real) if is_stats_file(real) else None
    fake_feats = None
    if fake is not None:
        if is_checkpoint(fake):
            g, cfg, classes = load_generator(fake, device)
            image_size, channels = cfg.image_size, cfg.channels
            fake_images = generated_images(g, cfg.nz, n, batch_size, device, len(classes) if cfg.conditional else 0,
                                           seed)
        else:
            fake_images = real_images(fake, image_size, channels, n, seed + 1)
        fake_feats = metrics.features(net, fake_images, batch_size, device)
    if real_stats is not None:
        return metrics.scores_against_stats(*real_stats, fake_feats)
    real_feats = metrics.features(net, real_images(real, image_size, channels, n, seed), batch_size, device)
    real_gaussian = metrics.Gaussian.fit(real_feats)
    if save_stats is not None:
        metrics.save_stats(real_gaussian, real_feats.size(0), save_stats)
    if fake_feats is None:
        return None
    return metrics.scores(real_feats, fake_feats, kid_subsets, kid_subset_size, real=real_gaussian)
