"""`fastgan train`'s options: TrainConfig (the command line's and a config file's fields, with
their choices and ranges), its validation, and the errors a run reports to the user in one line.
Combinations that depend on the device or the number of processes are checked by check_machine
when the trainer starts; the backend and the data by the trainer itself."""
import dataclasses
import math
from dataclasses import dataclass

import torch

from ..losses import GAN_LOSSES
from ..models import IMAGE_SIZES
from . import data as data_io
from . import metrics


class TrainError(ValueError):
    """A problem with the options or the run folder: one line for the user, exit code 2."""


class PeerLostError(TrainError):
    """Another rank died or stopped answering. The process group cannot be torn down cleanly
    then (gloo's threads still wait on the lost peer), so the CLI exits at once after saying so."""


@dataclass
class TrainConfig:
    data: str = "digits"
    image_size: int = 32
    channels: int = 1
    batch_size: int = 64
    steps: int = 2000
    lr: float = 2e-4
    beta1: float = 0.5
    nz: int = 64
    ngf: int = 32
    ndf: int = 32
    seed: int = 0
    out: str = "runs/dcgan"
    device: str = "auto"
    backend: str = "fused"
    amp: str = "none"
    dtype: str = "float32"
    channels_last: bool = False
    cuda_graphs: bool = False
    ema: bool = False
    ema_decay: float = 0.999
    ema_rampup: float = 0.05
    conditional: bool = False
    resume: bool = False
    sync_bn: bool = False
    dist_timeout: float = 600.0
    sample_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 25
    fid_every: int = 0
    inception: str = ""
    fid_n: int = 2000
    arch: str = "dcgan"
    loss: str = "bce"
    r1: float = 0.0
    n_critic: int = 1
    tensorboard: bool = False
    data_cache: str = ""  # "": cache.default_folder(); "none": decode into memory at every start
    gp_weight: float = 10.0

    overwrite: bool = False

    # loss: wgan-gp's critic has no BatchNorm, and a run keeps its loss.
    ARCHITECTURE = ("arch", "image_size", "channels", "nz", "ngf", "ndf", "conditional", "loss")
    CHOICES = {"arch": ("dcgan", "mlp"), "image_size": (28, 32, 64, 128), "channels": (1, 3),
               "device": ("auto", "cpu", "cuda"),
               "backend": ("fused", "reference"), "amp": ("none", "bf16", "fp16"), "dtype": ("float32", "float64"),
               "loss": GAN_LOSSES}
    # (lowest, highest) accepted; the upper bounds keep a typo from asking for terabytes.
    RANGES = {"batch_size": (1, 1 << 16), "steps": (1, 10**12), "nz": (1, 8192), "ngf": (1, 2048), "ndf": (1, 2048),
              "seed": (0, 2**63 - 1), "sample_every": (1, None), "checkpoint_every": (1, None), "log_every": (1, None),
              "lr": (0.0, None), "beta1": (0.0, 1.0), "ema_decay": (0.0, 1.0), "ema_rampup": (0.0, None),
              "dist_timeout": (0.0, None),
              "fid_every": (0, None), "fid_n": (2, 1 << 20), "r1": (0.0, None), "gp_weight": (0.0, None),
              "n_critic": (1, 1000)}
    EXCLUSIVE_LOW = {"lr", "dist_timeout", "gp_weight"}  # must be > the lowest, not >=
    EXCLUSIVE_HIGH = {"beta1"}

    def validate(self) -> None:
        """Every option's type and range, worded as argparse words its errors ("argument --x: ...")
        so that a config file and the command line fail the same way."""
        for field in dataclasses.fields(self):
            name, value = field.name, getattr(self, field.name)
            flag = "--" + name.replace("_", "-")
            kind = field.type
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                ok, value = True, float(value)
                setattr(self, name, value)
            if not ok:
                raise TrainError(f"argument {flag}: expected {kind.__name__}, got {value!r}")
            if kind is float and not math.isfinite(value):
                raise TrainError(f"argument {flag}: must be a finite number, got {value!r}")
            if name in self.CHOICES and value not in self.CHOICES[name]:
                choices = ", ".join(repr(c) for c in self.CHOICES[name])
                raise TrainError(f"argument {flag}: invalid choice: {value!r} (choose from {choices})")
            if name in self.RANGES:
                low, high = self.RANGES[name]
                too_low = value <= low if name in self.EXCLUSIVE_LOW else value < low
                too_high = high is not None and (value >= high if name in self.EXCLUSIVE_HIGH else value > high)
                if too_low or too_high:
                    lo = f"> {low}" if name in self.EXCLUSIVE_LOW else f">= {low}"
                    below = "<" if name in self.EXCLUSIVE_HIGH else "<="
                    hi = "" if high is None else f" and {below} {high}"
                    raise TrainError(f"argument {flag}: must be {lo}{hi}, got {value}")
        if not self.data:
            raise TrainError("argument --data: must not be empty ('digits', a folder or a .zip)")
        if not self.out:
            raise TrainError("argument --out: must not be empty")
        if self.arch == "dcgan" and self.image_size not in IMAGE_SIZES:
            raise TrainError(f"argument --image-size: the DCGAN takes {', '.join(map(str, IMAGE_SIZES))}, got "
                             f"{self.image_size} (--arch mlp takes any of {self.CHOICES['image_size']})")
        if self.arch == "mlp" and self.conditional:
            raise TrainError("--conditional needs --arch dcgan (the MLP models have no label input)")
        if self.fid_every and not self.inception:
            raise TrainError(f"argument --fid-every: {metrics.INCEPTION_HINT}")
        if self.n_critic > 1 and self.cuda_graphs:
            raise TrainError("--n-critic > 1 cannot be used with --cuda-graphs yet (the captured step is one D and "
                             "one G step)")
        if self.resume and self.overwrite:
            raise TrainError("--resume continues the run in --out and --overwrite deletes it; give one of them")


def data_cache_folder(option: str):
    """--data-cache: a folder, '' for the default one, 'none' for no cache."""
    return None if option == "none" else option or data_io.cache.default_folder()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device cuda, but CUDA is not available (torch {torch.__version__}"
                         f"{' is a CPU build' if torch.version.cuda is None else ' sees no GPU'}); use --device cpu")
    return torch.device(name)


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_machine(cfg: TrainConfig, device: torch.device, world) -> None:
    """The option combinations that depend on the device or on the number of processes (what
    validate() cannot know)."""
    if cfg.amp == "fp16" and device.type != "cuda":
        raise TrainError("--amp fp16 needs a CUDA device (its loss scaling is CUDA's); on a CPU use --amp bf16")
    if cfg.cuda_graphs and device.type != "cuda":
        raise TrainError("--cuda-graphs needs a CUDA device")
    if cfg.cuda_graphs and cfg.amp == "fp16":
        raise TrainError("--cuda-graphs cannot capture fp16 loss scaling (it reads the scale on the host); "
                         "use --amp bf16")
    if cfg.dtype == "float64" and cfg.amp != "none":
        raise TrainError("--amp mixes float16/bfloat16 into a float32 model; it cannot be used with --dtype float64")
    if cfg.cuda_graphs and world.active:
        raise TrainError(f"--cuda-graphs cannot be used with {world.size} processes: the step would have to "
                         "capture DistributedDataParallel's gradient all-reduce; leave it out under torchrun")
    penalties = [flag for flag, on in (("--r1", cfg.r1 > 0), ("--loss wgan-gp", cfg.loss == "wgan-gp")) if on]
    if penalties and world.active:
        raise TrainError(f"{penalties[0]} differentiates D's input gradient (double backward), which "
                         "DistributedDataParallel does not support; run it in one process")
    if penalties and cfg.cuda_graphs:
        raise TrainError(f"{penalties[0]} cannot be used with --cuda-graphs yet (the gradient penalty's double "
                         "backward has not been captured and checked on a GPU)")
