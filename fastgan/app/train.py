"""`fastgan train`: a DCGAN (optionally class-conditional) or the MNIST tutorials' MLP GAN, trained
with the fused layers and any of the GAN losses in fastgan.losses.

The run folder holds samples/ (fixed-latent grids), real.png, metrics.jsonl, loss.png,
config.json (the options used) and checkpoint.pt (atomic; everything needed to resume); with
--fid-every, FID/KID rows in metrics.jsonl and fid.png.

Under torchrun every rank trains a shard of each batch in DistributedDataParallel (NCCL on
GPUs, gloo on CPU); rank 0 alone writes the run folder. A run's batches and latents depend
on the global batch (batch_size * ranks) and the step, not on how it is split, so 2 ranks x
batch B train as 1 process x batch 2B does (exactly so with --sync-bn)."""
import collections
import contextlib
import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

import fastgan
from ..losses import GAN_LOSSES, d_fake_loss, d_real_loss, g_loss, gradient_penalty, r1_penalty
from ..models import (IMAGE_SIZES, ConditionalDiscriminator, ConditionalGenerator, Discriminator, Generator,
                      MLPDiscriminator, MLPGenerator, weights_init)
from ..sync_batch_norm import convert_sync_batchnorm
from . import checkpoint as ckpt_io
from . import data as data_io
from . import distributed, metrics
from .images import grid, save_grid, to_uint8


def ema_decay_at(decay: float, images_before: int, batch: int, rampup: float) -> float:
    """The decay of G's EMA for a step of `batch` images after `images_before` images. `decay` is
    the per-step decay of a long run. With rampup > 0 the EMA's half-life, in images, is at most
    rampup x the images seen (StyleGAN2-ADA's ema_rampup): the first step copies G, and early on
    the EMA averages over the last few steps instead of lagging behind a G that still changes
    fast. (A decay d per step of B images has a half-life of B log 0.5 / log d images, so
    capping the half-life at h caps the decay at 0.5 ** (B / h).)"""
    if rampup == 0:
        return decay
    if images_before == 0:
        return 0.0
    return min(decay, 0.5 ** (batch / (images_before * rampup)))


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


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print):
        cfg.validate()  # every value and range; what remains below depends on the machine or the data
        self.cfg = cfg
        self.world = distributed.world_from_environment()
        self.log = log if self.world.is_main else (lambda *_: None)
        self.device = resolve_device(cfg.device)
        if cfg.tensorboard and self.world.is_main:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise TrainError("--tensorboard needs the tensorboard package: pip install 'fastgan[tensorboard]'") \
                    from None
        self.tb = None
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise TrainError("--amp fp16 needs a CUDA device (its loss scaling is CUDA's); on a CPU use --amp bf16")
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise TrainError("--cuda-graphs needs a CUDA device")
        if cfg.cuda_graphs and cfg.amp == "fp16":
            raise TrainError("--cuda-graphs cannot capture fp16 loss scaling (it reads the scale on the host); "
                             "use --amp bf16")
        if cfg.dtype == "float64" and cfg.amp != "none":
            raise TrainError("--amp mixes float16/bfloat16 into a float32 model; it cannot be used with --dtype float64")
        if cfg.cuda_graphs and self.world.active:
            raise TrainError(f"--cuda-graphs cannot be used with {self.world.size} processes: the step would have to "
                             "capture DistributedDataParallel's gradient all-reduce; leave it out under torchrun")
        penalties = [flag for flag, on in (("--r1", cfg.r1 > 0), ("--loss wgan-gp", cfg.loss == "wgan-gp")) if on]
        if penalties and self.world.active:
            raise TrainError(f"{penalties[0]} differentiates D's input gradient (double backward), which "
                             "DistributedDataParallel does not support; run it in one process")
        if penalties and cfg.cuda_graphs:
            raise TrainError(f"{penalties[0]} cannot be used with --cuda-graphs yet (the gradient penalty's double "
                             "backward has not been captured and checked on a GPU)")
        try:
            self.device = distributed.device_for(self.world, self.device)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        self.dtype = DTYPES[cfg.dtype]
        try:
            fastgan.set_backend(cfg.backend)
            fastgan.backend()  # raises for a module built against another torch
        except RuntimeError as exc:
            hint = " (or pass --backend reference)" if cfg.backend == "fused" else ""
            raise TrainError(f"{str(exc).removeprefix('fastgan: ')}{hint}") from None
        self.data = data_io.load(cfg.data, cfg.image_size, cfg.channels, data_cache_folder(cfg.data_cache), log)
        if self.data.skipped:
            log(f"skipped {self.data.skipped} unreadable image(s); training on {len(self.data.images)}")
        if cfg.conditional and self.data.labels is None:
            raise TrainError(f"--conditional needs labelled data, and {cfg.data!r} has none (a folder needs one "
                             "sub-folder per class)")
        self.num_classes = self.data.num_classes if cfg.conditional else 0
        self.fid_net = self.fid_real = None
        if cfg.fid_every and self.world.is_main:  # before anything is written: a bad path costs nothing
            try:
                self.fid_net = metrics.load_feature_network(cfg.inception, self.device)
            except metrics.MetricsError as exc:
                raise TrainError(str(exc)) from None
        torch.manual_seed(cfg.seed)
        self.g, self.d = build_models(cfg, self.num_classes, self.device)
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False) if cfg.ema else None
        if self.g_ema is not None:  # the tensors _update_ema moves, listed once (loading a state keeps them)
            self.ema_pairs = ([*self.g_ema.parameters()], [*self.g.parameters()], [*self.g_ema.buffers()],
                              [*self.g.buffers()])
        distributed.join(self.world, self.device, cfg.dist_timeout)
        # What the step calls: DDP wrappers under torchrun (self.g / self.d stay the modules,
        # whose state_dicts the checkpoint holds). With --sync-bn the running statistics are
        # the same on every rank, so DDP need not broadcast them at each forward.
        self.g_train, self.d_train = self.g, self.d
        if self.world.active:
            self.g_train = distributed.wrap(self.g, self.device, sync_buffers_each_forward=not cfg.sync_bn)
            self.d_train = distributed.wrap(self.d, self.device, sync_buffers_each_forward=not cfg.sync_bn)
        betas = (cfg.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=betas, capturable=cfg.cuda_graphs)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr, betas=betas, capturable=cfg.cuda_graphs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.latent_gen = torch.Generator().manual_seed(cfg.seed + 1)
        fixed = torch.Generator().manual_seed(cfg.seed + 2)
        self.fixed_z = torch.randn(64, cfg.nz, generator=fixed).to(self.device, self.dtype)
        self.fixed_labels = (torch.arange(64) % max(self.num_classes, 1)).to(self.device) if cfg.conditional else None
        self.fixed_real = self.data.as_float(torch.randperm(len(self.data.images), generator=fixed)[:64])
        self.last_checkpoint = None
        self.diversity_real = mean_pairwise_distance(self.fixed_real)  # fixed: computed once
        self.step = 0
        self.d_steps = 0  # D's optimiser steps: step x --n-critic, unless --n-critic changed on a resume
        self.history = []
        self.graphed = None
        self.folder_ready = False

    # --- one step ---------------------------------------------------------------------
    def _batch(self, step):
        idx = data_io.batch_indices(len(self.data.images), self.cfg.batch_size, step, self.cfg.seed, self.world.rank,
                                    self.world.size)
        real = self.data.as_float(idx).to(self.device, self.dtype)
        if self.cfg.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = self.data.labels[idx].to(self.device) if self.cfg.conditional else None
        return real, labels

    def _my_share(self, whole, n):
        # Every rank draws the whole global batch from the same generator and keeps its own
        # slice, so the latents depend on the global batch, not on the number of ranks.
        return whole[self.world.rank * n:(self.world.rank + 1) * n].to(self.device)

    def _latents(self, n):
        if self.graphed is not None or self.cfg.cuda_graphs:
            return torch.randn(n, self.cfg.nz, device=self.device)  # graph-safe CUDA RNG
        return self._my_share(torch.randn(n * self.world.size, self.cfg.nz, generator=self.latent_gen,
                                          dtype=self.dtype), n)

    def _fake_labels(self, n):
        if not self.cfg.conditional:
            return None
        if self.cfg.cuda_graphs:
            return torch.randint(self.num_classes, (n,), device=self.device)
        return self._my_share(torch.randint(self.num_classes, (n * self.world.size,), generator=self.latent_gen), n)

    def _d_step(self, real, labels, fake, fake_labels, autocast):
        """One optimiser step of D on a real and a fake batch: (D's loss, its outputs on both)."""
        cond, kind = self.cfg.conditional, self.cfg.loss
        # D's real and fake passes each get their own backward (the gradients add up), so
        # DDP never sees two forwards before one backward, and buffers it broadcasts at a
        # forward are never ones a pending backward saved (the known in-place error).
        # no_sync: the gradients are all-reduced once, after the second backward.
        self.opt_d.zero_grad(set_to_none=False)
        with self._accumulate(self.d_train):
            if self.cfg.r1 > 0:
                real = real.detach().requires_grad_(True)
            with autocast:
                out_real = self.d_train(real, labels) if cond else self.d_train(real)
                loss_real = d_real_loss(out_real, kind)
            if self.cfg.r1 > 0:
                loss_real = loss_real + r1_penalty(out_real.float(), real, self.cfg.r1)
            self.scaler.scale(loss_real).backward()
        with autocast:
            out_fake = self.d_train(fake.detach(), fake_labels) if cond else self.d_train(fake.detach())
            loss_fake = d_fake_loss(out_fake, kind)
        if kind == "wgan-gp":
            with autocast:
                loss_fake = loss_fake + gradient_penalty(self.d_train, real, fake, self.cfg.gp_weight,
                                                         (labels,) if cond else ())
        self.scaler.scale(loss_fake).backward()
        self.scaler.step(self.opt_d)
        return loss_real.detach() + loss_fake.detach(), out_real, out_fake

    def _step(self, real, labels, critic_batches=()):
        """One G step after 1 + len(critic_batches) D steps (--n-critic); critic_batches hold the
        (real, labels) of the extra D steps."""
        cond = self.cfg.conditional
        n = real.size(0)
        z, fake_labels = self._latents(n), self._fake_labels(n)
        autocast = torch.autocast(self.device.type, self.autocast_dtype or torch.float32,
                                  enabled=self.autocast_dtype is not None)
        with autocast:
            fake = self.g_train(z, fake_labels) if cond else self.g_train(z)
        kind = self.cfg.loss
        critic_losses = []
        for critic_real, critic_labels in critic_batches:  # --n-critic: the extra D steps, each on fresh data
            z_c, labels_c = self._latents(n), self._fake_labels(n)
            with torch.no_grad(), autocast:
                fake_c = self.g_train(z_c, labels_c) if cond else self.g_train(z_c)
            critic_losses.append(self._d_step(critic_real, critic_labels, fake_c, labels_c, autocast)[0])
            self.scaler.update()  # a GradScaler steps each optimiser once per update
        loss_d, out_real, out_fake = self._d_step(real, labels, fake, fake_labels, autocast)
        if critic_losses:
            loss_d = torch.stack(critic_losses + [loss_d]).mean()  # metrics: D's loss over this step's D steps
        # G's step runs D as the plain module: D's gradients from it are not used (opt_d
        # zeroes them first), so there is nothing to all-reduce for D.
        with autocast:
            out_g = self.d(fake, fake_labels) if cond else self.d(fake)
            loss_g = g_loss(out_g, kind)
        self.opt_g.zero_grad(set_to_none=False)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        # D(x) and D(G(z)): probabilities for BCE, D's raw outputs for the other losses.
        squash = torch.sigmoid if kind == "bce" else (lambda t: t)
        stats = torch.stack([loss_d.float(), loss_g.detach().float(),
                             squash(out_real.detach().float()).mean(), squash(out_fake.detach().float()).mean()])
        return stats

    def _opening_line(self):
        """What a log file needs first: what trains, on what, where, with which path."""
        cfg = self.cfg
        processes = f" x {self.world.size} processes" if self.world.size > 1 else ""
        options = [o for o, on in ((f"amp {cfg.amp}", cfg.amp != "none"), ("channels_last", cfg.channels_last),
                                   ("CUDA graphs", cfg.cuda_graphs), (cfg.dtype, cfg.dtype != "float32")) if on]
        return (f"fastgan train: {cfg.arch} ({cfg.loss} loss{', conditional' if cfg.conditional else ''}) on "
                f"{cfg.data} ({len(self.data.images)} images, {cfg.channels}x{cfg.image_size}x{cfg.image_size}), "
                f"steps {self.step + 1}-{cfg.steps} at batch {cfg.batch_size}{processes}"
                f"{f', {cfg.n_critic} D steps per G step' if cfg.n_critic > 1 else ''}; device {self.device}, "
                f"backend {fastgan.backend()}{''.join(', ' + o for o in options)}; writing {cfg.out}")

    def _update_ema(self):
        """Moves G's EMA towards G after step self.step (outside any captured graph: its decay
        changes while it ramps up)."""
        if self.g_ema is None:
            return
        batch = self.cfg.batch_size * self.world.size
        decay = ema_decay_at(self.cfg.ema_decay, (self.step - 1) * batch, batch, self.cfg.ema_rampup)
        ema_params, params, ema_buffers, buffers = self.ema_pairs
        with torch.no_grad():  # two multi-tensor calls, not one launch per tensor
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
            torch._foreach_copy_(ema_buffers, buffers)

    @staticmethod
    def _accumulate(module):
        return module.no_sync() if isinstance(module, DistributedDataParallel) else contextlib.nullcontext()

    # --- run ----------------------------------------------------------------------------
    def run(self):
        """Trains to cfg.steps. Under torchrun, a rank that exits or stops answering makes the
        others stop within --dist-timeout seconds (at once when its process is gone) with
        one line naming the step and the checkpoint to resume from."""
        try:
            result = self._run()
            distributed.wait_for_all(self.world)
            return result
        except RuntimeError as exc:
            if not (self.world.active and distributed.is_peer_failure(exc)):
                raise
            where = (f"The last checkpoint (step {self.last_checkpoint}) is in {self.cfg.out}"
                     if self.last_checkpoint is not None else "No checkpoint was written yet")
            raise PeerLostError(f"rank {self.world.rank} of {self.world.size}: lost contact with another rank during "
                             f"step {self.step + 1} ({str(exc).splitlines()[0][:200]}); another rank probably "
                             f"exited, see its log. {where}; restart with --resume") from None
        finally:
            distributed.leave(self.world)

    def _run(self):
        cfg = self.cfg
        if not self.folder_ready:  # a second run() of this trainer continues its own run
            problem = self._prepare_run_folder() if self.world.is_main else None
            problem = distributed.broadcast_from_main(problem, self.world)
            if problem:
                raise TrainError(problem)
            self.folder_ready = True
        if cfg.resume:
            self.load_checkpoint(os.path.join(cfg.out, "checkpoint.pt"))
        if self.step >= cfg.steps:  # before anything is written: the run stays as it is
            self.log(f"already at step {self.step} of {cfg.steps}; nothing to do")
            return self
        if self.world.is_main:
            self._write_config()
            save_grid(self.fixed_real, os.path.join(cfg.out, "real.png"))
            if cfg.tensorboard:  # a resumed run drops the events after its checkpoint, as metrics.jsonl does
                self.tb = TensorBoardLog(os.path.join(cfg.out, "tb"), purge_step=self.step + 1 if self.step else None)
        self.log(self._opening_line())
        if cfg.cuda_graphs:
            real, labels = self._batch(self.d_steps)
            args = (real,) if labels is None else (real, labels)
            step_fn = (lambda r: self._step(r, None)) if labels is None else self._step
            self.graphed = fastgan.graph.GraphedStep(step_fn, *args, optimizers=[self.opt_g, self.opt_d], warmup=1)
            self.step += 1  # the warm-up was a real step
            self.d_steps += 1
            self._update_ema()
        progress = _Progress(self.step, cfg.steps, self.log)
        speed = _Throughput(cfg.batch_size * self.world.size * cfg.n_critic, self.step)  # real images D sees
        while self.step < cfg.steps:
            critic = [self._batch(self.d_steps + i) for i in range(cfg.n_critic - 1)]
            real, labels = self._batch(self.d_steps + cfg.n_critic - 1)
            if self.graphed is not None:
                stats = self.graphed(*((real,) if labels is None else (real, labels)))
            else:
                stats = self._step(real, labels, critic)
            self.step += 1
            self.d_steps += cfg.n_critic
            self._update_ema()
            check_now = self.device.type == "cpu" or self.step % cfg.log_every == 0 or self.step == cfg.steps
            if check_now:
                stats = distributed.mean_over_ranks(stats, self.world)  # every rank sees, and stops on, the same
                values = stats.tolist()
                if not all(math.isfinite(v) for v in values[:2]):
                    raise TrainError(f"loss became {values[0]:.4g} (D) / {values[1]:.4g} (G) at step {self.step}; "
                                     f"stopping. The last good checkpoint is kept in {cfg.out}")
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self._log_metrics(stats.tolist(), speed.update(self.step))
                progress.update(self.step, self._last_losses())
            if cfg.fid_every and (self.step % cfg.fid_every == 0 or self.step == cfg.steps):
                self._log_fid()
            if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                self.save_samples()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        progress.close()
        if self.tb is not None:
            self.tb.close()
        self.log(f"{speed.mean():.0f} images/s on average over steps {speed.first_step + 1}-{self.step}")
        return self

    # The files a run writes into its folder; nothing else there is touched.
    RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "config.json", "real.png", "loss.png", "fid.png")

    def _prepare_run_folder(self):
        """Rank 0: make the run folder, or say why not (returned, so every rank can raise it).
        A folder holding another run is only written into with --resume, or cleared first with
        --overwrite: two runs' metrics and samples must never mix."""
        out = self.cfg.out
        if os.path.exists(out) and not os.path.isdir(out):
            return f"--out {out!r} is a file; the run folder must be a folder (it is created if missing)"
        held = [f for f in ("checkpoint.pt", "metrics.jsonl", "config.json") if os.path.exists(os.path.join(out, f))]
        if held and not self.cfg.resume:
            if not self.cfg.overwrite:
                return (f"--out {out!r} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                        "--overwrite to delete it and start over, or another --out")
            for name in self.RUN_FILES:
                path = os.path.join(out, name)
                if os.path.isfile(path):
                    os.unlink(path)
            samples = os.path.join(out, "samples")
            if os.path.isdir(samples):
                for name in os.listdir(samples):
                    if name.startswith("step_") and name.endswith(".png"):
                        os.unlink(os.path.join(samples, name))
        try:
            os.makedirs(os.path.join(out, "samples"), exist_ok=True)
        except OSError as exc:
            return f"cannot create the run folder {out!r}: {exc.strerror or exc}"
        return None

    def _last_losses(self):
        return next(r for r in reversed(self.history) if "loss_d" in r)

    def _sampler(self):
        return self.g_ema if self.g_ema is not None else self.g

    # Every rank runs generate() (with --sync-bn its BatchNorm is a collective); rank 0 writes.
    def _log_metrics(self, values, ips):
        fake = generate(self._sampler(), self.fixed_z, self.fixed_labels)
        row = {"step": self.step, "d_steps": self.d_steps, "time": round(time.time(), 3), "loss_d": values[0],
               "loss_g": values[1],
               "d_real": values[2], "d_fake": values[3], "images_per_s": round(ips, 1),
               "diversity_fake": mean_pairwise_distance(fake), "diversity_real": self.diversity_real}
        self.history.append(row)
        if not self.world.is_main:
            return
        with open(os.path.join(self.cfg.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            self.tb.scalars(row)

    # Every rank generates (with --sync-bn G's BatchNorm is a collective); rank 0 scores.
    def _log_fid(self):
        """FID/KID of G (its EMA when kept) against up to --fid-n training images, as a
        metrics.jsonl row of its own and fid.png."""
        fake = generated_images(self._sampler(), self.cfg.nz, self.cfg.fid_n, self.cfg.batch_size, self.device,
                                self.num_classes, seed=self.cfg.seed + 3)
        if not self.world.is_main:
            return
        if self.fid_real is None:  # the real side is the same at every evaluation
            images = self.data.images
            if len(images) > self.cfg.fid_n:
                pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.cfg.seed + 4))
                images = images[pick[:self.cfg.fid_n]]
            self.fid_real = metrics.features(self.fid_net, images, self.cfg.batch_size, self.device)
        scores = metrics.scores(self.fid_real, metrics.features(self.fid_net, fake, self.cfg.batch_size, self.device))
        row = {"step": self.step, "time": round(time.time(), 3), "fid": scores.fid, "kid": scores.kid,
               "kid_std": scores.kid_std}
        self.history.append(row)
        with open(os.path.join(self.cfg.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            self.tb.scalars(row)
        self.log(f"step {self.step}: {scores}")
        plot_fid(self.cfg.out)

    def save_samples(self):
        fake = generate(self._sampler(), self.fixed_z, self.fixed_labels)
        if self.world.is_main:
            save_grid(fake.cpu(), os.path.join(self.cfg.out, "samples", f"step_{self.step:07d}.png"))
            if self.tb is not None:
                self.tb.samples(fake, self.step)

    def _write_config(self):
        with open(os.path.join(self.cfg.out, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(self.cfg), f, indent=2)

    # --- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self):
        self.last_checkpoint = self.step
        if not self.world.is_main:
            return
        state = {
            "format": ckpt_io.FORMAT, "step": self.step, "d_steps": self.d_steps,
            "config": dataclasses.asdict(self.cfg),
            "class_names": self.data.class_names if self.cfg.conditional else [],
            "G": self.g.state_dict(), "D": self.d.state_dict(),
            "G_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "latent": self.latent_gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }
        ckpt_io.save_atomic(state, os.path.join(self.cfg.out, "checkpoint.pt"))
        plot_losses(self.cfg.out)

    def load_checkpoint(self, path):
        """Rank 0 reads the checkpoint and sends it to the others (only rank 0 needs to see
        the run folder). It holds no per-rank state, so any number of ranks can resume it."""
        state = None
        if self.world.is_main:
            try:
                state = ckpt_io.load(path)
            except ckpt_io.CheckpointError as exc:
                state = exc
        state = distributed.broadcast_from_main(state, self.world)
        if isinstance(state, Exception):
            raise TrainError(str(state)) from None
        saved = state["config"]
        defaults = TrainConfig()  # a checkpoint from before an option existed holds its default
        for key in TrainConfig.ARCHITECTURE:
            if saved.get(key, getattr(defaults, key)) != getattr(self.cfg, key):
                raise TrainError(f"checkpoint {path!r} was made with --{key.replace('_', '-')} {saved.get(key)} but "
                                 f"this run has {getattr(self.cfg, key)}; pass the same architecture to resume")
        try:
            self.g.load_state_dict(state["G"])
            self.d.load_state_dict(state["D"])
            if self.g_ema is not None:
                self.g_ema.load_state_dict(state["G_ema"] or state["G"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise TrainError(f"checkpoint {path!r} does not fit this model: {str(exc).splitlines()[0][:160]}") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.latent_gen.set_state(state["rng"]["latent"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = self.last_checkpoint = int(state["step"])
        self.d_steps = int(state.get("d_steps", self.step))  # checkpoints from before --n-critic: one per step
        metrics_path = os.path.join(self.cfg.out, "metrics.jsonl")
        if self.world.is_main and os.path.exists(metrics_path):  # keep the rows up to the checkpoint, not later ones
            with open(metrics_path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            self.history = [r for r in rows if r["step"] <= self.step]
            if len(self.history) < len(rows):
                with open(metrics_path, "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in self.history)
        self.log(f"resumed from {path} at step {self.step}")


def _plot_metrics(out, key, name, draw):
    """out/name from the rows of metrics.jsonl that hold `key`: draw(plt, rows) makes the figure,
    which is written atomically (needs matplotlib; skipped quietly without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [r for r in (json.loads(line) for line in f if line.strip()) if key in r]
    if not rows:
        return
    fig = draw(plt, rows)
    fig.tight_layout()
    tmp = os.path.join(out, f".{name}.tmp")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, os.path.join(out, name))


class TensorBoardLog:
    """--tensorboard: metrics.jsonl's figures and the sample grids as TensorBoard events."""
    TAGS = {"loss_d": "loss/D", "loss_g": "loss/G", "d_real": "D output/real", "d_fake": "D output/fake",
            "images_per_s": "speed/images per s", "diversity_fake": "diversity/fake",
            "diversity_real": "diversity/real", "fid": "metrics/FID", "kid": "metrics/KID",
            "kid_std": "metrics/KID std"}

    def __init__(self, folder, purge_step=None):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(folder, purge_step=purge_step)

    def scalars(self, row):
        for key, tag in self.TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], row["step"])
        self.writer.flush()  # a TensorBoard watching the run sees each row when metrics.jsonl does

    def samples(self, fake, step):
        self.writer.add_image("samples", grid(to_uint8(fake)).numpy(), step, dataformats="HWC")
        self.writer.flush()

    def close(self):
        self.writer.close()


def plot_losses(out):
    """loss.png: D's and G's losses over the steps."""
    def draw(plt, rows):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss_d"] for r in rows], label="D loss")
        ax.plot(steps, [r["loss_g"] for r in rows], label="G loss")
        ax.set_xlabel("step")
        ax.legend()
        return fig

    _plot_metrics(out, "loss_d", "loss.png", draw)


def plot_fid(out):
    """fid.png: FID and KID (with its standard deviation) over the steps."""
    def draw(plt, rows):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        steps = [r["step"] for r in rows]
        left.plot(steps, [r["fid"] for r in rows], marker="o")
        left.set_title("FID")
        right.errorbar(steps, [r["kid"] for r in rows], yerr=[r["kid_std"] for r in rows], marker="o", capsize=3)
        right.set_title("KID")
        for ax in (left, right):
            ax.set_xlabel("step")
        return fig

    _plot_metrics(out, "fid", "fid.png", draw)


class _Throughput:
    """Images per second over the last `window` log intervals (one interval swings with
    whatever else the machine does), and over the whole run."""

    def __init__(self, images_per_step: int, step: int, window: int = 10):
        self.images_per_step, self.first_step = images_per_step, step
        self.start = time.perf_counter()
        self.points = collections.deque([(self.start, step)], maxlen=window + 1)

    def update(self, step: int) -> float:
        self.points.append((time.perf_counter(), step))
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        return (s1 - s0) * self.images_per_step / max(t1 - t0, 1e-9)

    def mean(self) -> float:
        t1, s1 = self.points[-1]
        return (s1 - self.first_step) * self.images_per_step / max(t1 - self.start, 1e-9)


class _Progress:
    """tqdm on a terminal; otherwise (logs, CI) a plain line at the first logged step, then every
    5 % of the run."""

    def __init__(self, start, total, log):
        self.log, self.total, self.bar = log, total, None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
            except ImportError:
                pass
        self.start = self.last = self.printed = start

    def update(self, step, row):
        text = f"D {row['loss_d']:.3f} G {row['loss_g']:.3f} {row['images_per_s']:.0f} img/s"
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.set_postfix_str(text)
        elif step == self.total or step - self.printed >= max(1, self.total // 20) or self.printed == self.start:
            self.log(f"step {step}/{self.total}  {text}")
            self.printed = step
        self.last = step

    def close(self):
        if self.bar is not None:
            self.bar.close()
