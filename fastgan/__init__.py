"""fastgan: fused CPU/CUDA operators for DCGAN-style GAN training in PyTorch."""
from ._backend import backend, set_backend, use_backend
from . import functional, graph, nn, models  # noqa: E402
from .fuse import fuse, fuse_report, unfuse, FusedSequential  # noqa: E402

__version__ = "0.1.0"
__all__ = ["backend", "set_backend", "use_backend", "functional", "graph", "nn", "models", "fuse", "fuse_report",
           "unfuse", "FusedSequential", "__version__"]
