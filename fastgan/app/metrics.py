"""FID and KID, offline: features from an Inception network the user supplies as a TorchScript
file, statistics in float64.

The network is the one StyleGAN2-ADA's metrics load, `inception-2015-12-05.pt`: called as
`net(images, return_features=True)` on uint8 RGB images (N, 3, H, W) in [0, 255] (it resizes
them itself), it returns (N, 2048) pool features. fastgan never downloads it; any TorchScript
module with that call signature works (the tests use a tiny one).

FID is the Frechet distance between Gaussians fitted to the two feature sets:
    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
The trace of the matrix square root is computed as the sum of the square roots of the
eigenvalues of A S2 A with A = S1^(1/2) (both symmetric eigendecompositions, float64): A S2 A
is similar to S1 S2 and symmetric positive semi-definite, so its eigenvalues are real and the
rounding stays at the level of an eigendecomposition, where the general sqrtm of the
non-symmetric S1 S2 can return complex parts and loses digits on near-singular covariances.

KID is the unbiased estimate of the squared MMD with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets, as in Binkowski et al. (2018).

A statistics file is a .npz with the float64 arrays `mu` (D,) and `sigma` (D, D), the layout
pytorch-fid writes and reads (fastgan adds `n`, the number of images). Scores against one are
comparable only when it was computed with the same network, image size and resizing."""
import os
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

INCEPTION_FILE = "inception-2015-12-05.pt"
# Where StyleGAN2-ADA's metrics fetch it from (NVIDIA's CDN).
INCEPTION_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_FILE}"
INCEPTION_HINT = (f"FID/KID need the Inception network as a TorchScript file, {INCEPTION_FILE!r} (the file "
                  f"StyleGAN2-ADA's metrics load). fastgan downloads nothing: fetch it once from "
                  f"{INCEPTION_URL} and pass its path with --inception")


class MetricsError(ValueError):
    """A missing or unusable feature network or image set: the CLI prints it as one line."""


def load_feature_network(path: Optional[str], device="cpu") -> torch.jit.ScriptModule:
    if not path:
        raise MetricsError(INCEPTION_HINT)
    if not os.path.isfile(path):
        raise MetricsError(f"--inception {path!r} does not exist. {INCEPTION_HINT}")
    try:
        with warnings.catch_warnings():
            # The published network is a TorchScript file, so there is no torch.export path to
            # switch to; newer torch deprecates the loader with a warning at every call.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load. is deprecated", category=DeprecationWarning)
            net = torch.jit.load(path, map_location=torch.device(device))
    except Exception as exc:  # not a TorchScript archive, a truncated download
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MetricsError(f"--inception {path!r} is not a loadable TorchScript file ({reason}). "
                           f"{INCEPTION_HINT}") from None
    return net.eval()


@torch.no_grad()
def features(net, images: torch.Tensor, batch_size: int = 64, device="cpu") -> torch.Tensor:
    """(N, D) float64 features of uint8 images (N, C, H, W); one-channel images are repeated
    to RGB, as the network expects."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.size(1) not in (1, 3):
        raise MetricsError(f"expected uint8 images of shape (N, 1 or 3, H, W), got {images.dtype} "
                           f"{tuple(images.shape)}")
    out = []
    for i in range(0, images.size(0), batch_size):
        batch = images[i:i + batch_size].to(device)
        if batch.size(1) == 1:
            batch = batch.expand(-1, 3, -1, -1)
        f = net(batch, return_features=True)
        if f.dim() != 2 or f.size(0) != batch.size(0):
            raise MetricsError(f"the feature network returned shape {tuple(f.shape)} for {batch.size(0)} images; "
                               f"expected ({batch.size(0)}, D)")
        out.append(f.double().cpu())
    return torch.cat(out)


@dataclass
class Gaussian:
    mean: torch.Tensor  # (D,) float64
    cov: torch.Tensor  # (D, D) float64, unbiased

    @staticmethod
    def fit(feats: torch.Tensor) -> "Gaussian":
        if feats.size(0) < 2:
            raise MetricsError(f"FID needs at least 2 images per set, got {feats.size(0)}")
        x = feats.double()
        mean = x.mean(0)
        d = x - mean
        return Gaussian(mean, d.T @ d / (x.size(0) - 1))


def check_stats_path(path: str) -> None:
    """Refuses a path a statistics file cannot be written to, before any work is done."""
    if not path.endswith(".npz"):
        raise MetricsError(f"argument --save-stats: {path!r} must end in .npz (numpy would add the suffix)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MetricsError(f"argument --save-stats: the folder {folder!r} does not exist")


def save_stats(gaussian: Gaussian, n: int, path: str) -> None:
    """Written atomically (checkpoint.write_atomic): a killed write never leaves a truncated
    file where a later run would read it."""
    import numpy as np

    from .checkpoint import write_atomic

    check_stats_path(path)
    write_atomic(path, lambda f: np.savez_compressed(f, mu=gaussian.mean.numpy(), sigma=gaussian.cov.numpy(),
                                                     n=np.int64(n)))


def load_stats(path: str):
    """(Gaussian, number of images or None) from a statistics file; every way it can be wrong
    is a MetricsError naming the file."""
    import numpy as np

    if not os.path.isfile(path):
        raise MetricsError(f"--real {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise MetricsError(f"--real {path!r} is not a readable .npz statistics file ({exc})") from None
    missing = [k for k in ("mu", "sigma") if k not in arrays]
    if missing:
        raise MetricsError(f"--real {path!r} has no {' or '.join(missing)} array; a statistics file holds mu (D,) "
                           f"and sigma (D, D), as pytorch-fid writes them")
    mu, sigma = torch.from_numpy(arrays["mu"]).double(), torch.from_numpy(arrays["sigma"]).double()
    if mu.dim() != 1 or sigma.shape != (mu.numel(), mu.numel()):
        raise MetricsError(f"--real {path!r}: mu has shape {tuple(mu.shape)} and sigma {tuple(sigma.shape)}; "
                           "expected (D,) and (D, D)")
    if not (mu.isfinite().all() and sigma.isfinite().all()):
        raise MetricsError(f"--real {path!r} holds NaN or infinite values")
    n = int(arrays["n"]) if "n" in arrays and arrays["n"].shape == () else None
    return Gaussian(mu, sigma), n


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    below zero from rounding are taken as zero)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """tr((s1 s2)^(1/2)) for symmetric PSD s1, s2, in float64 (see the module docstring)."""
    a = _sqrt_psd(s1.double())
    m = a @ s2.double() @ a
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum().item()


def frechet_distance(g1: Gaussian, g2: Gaussian) -> float:
    diff = g1.mean - g2.mean
    value = diff.dot(diff).item() + g1.cov.trace().item() + g2.cov.trace().item() \
        - 2.0 * trace_sqrt_product(g1.cov, g2.cov)
    return max(value, 0.0)  # rounding can take a distance of ~0 a hair below zero


def fid(real_feats: torch.Tensor, fake_feats: torch.Tensor) -> float:
    return frechet_distance(Gaussian.fit(real_feats), Gaussian.fit(fake_feats))


def _kernel(x, y):
    return (x @ y.T / x.size(1) + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased squared MMD between two equal-size sets, cubic polynomial kernel."""
    m = x.size(0)
    kxx, kyy, kxy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return (within - 2.0 * kxy.sum() / (m * m)).item()


def kid(real_feats: torch.Tensor, fake_feats: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0):
    """(mean, standard deviation) of the unbiased MMD^2 over random subsets of both sets."""
    m = min(subset_size, real_feats.size(0), fake_feats.size(0))
    if m < 2:
        raise MetricsError(f"KID needs at least 2 images per set, got {min(real_feats.size(0), fake_feats.size(0))}")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = real_feats[torch.randperm(real_feats.size(0), generator=gen)[:m]].double()
        y = fake_feats[torch.randperm(fake_feats.size(0), generator=gen)[:m]].double()
        values.append(mmd2_unbiased(x, y))
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


@dataclass
class Scores:
    fid: float
    kid: Optional[float]  # None against a statistics file: KID needs the real features
    kid_std: Optional[float]
    n_real: Optional[int]  # None: a statistics file that does not say
    n_fake: int

    def as_dict(self):
        return {"fid": self.fid, "kid": self.kid, "kid_std": self.kid_std, "n_real": self.n_real,
                "n_fake": self.n_fake}

    def __str__(self):
        kid = "KID n/a (real statistics from a file)" if self.kid is None else \
            f"KID {self.kid:.5f} +- {self.kid_std:.5f}"
        n_real = "?" if self.n_real is None else self.n_real  # a statistics file need not say
        return f"FID {self.fid:.3f}  {kid}  ({n_real} real, {self.n_fake} generated images)"


def scores(real_feats, fake_feats, kid_subsets=100, kid_subset_size=1000, real: Optional[Gaussian] = None) -> Scores:
    """real: the real features' Gaussian, when the caller has fitted it already (a fit of 2048-d
    features is a covariance over every image: not worth doing twice)."""
    k, k_std = kid(real_feats, fake_feats, kid_subsets, kid_subset_size)
    real = Gaussian.fit(real_feats) if real is None else real
    return Scores(frechet_distance(real, Gaussian.fit(fake_feats)), k, k_std, real_feats.size(0), fake_feats.size(0))


def scores_against_stats(real: Gaussian, n_real: Optional[int], fake_feats) -> Scores:
    if real.mean.numel() != fake_feats.size(1):
        raise MetricsError(f"the statistics file holds {real.mean.numel()}-d statistics and the network gives "
                           f"{fake_feats.size(1)}-d features: they come from different networks")
    return Scores(frechet_distance(real, Gaussian.fit(fake_feats)), None, None, n_real, fake_feats.size(0))


def n_images(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise MetricsError(f"argument --n: must be an integer >= 2, got {value!r}")
    return value
