"""`fastgan train`: a DCGAN (optionally class-conditional) or the MNIST tutorials' MLP GAN, trained
with the fused layers and any of the GAN losses in fastgan.losses.

The run folder holds samples/ (fixed-latent grids), real.png, metrics.jsonl, loss.png,
config.json (the options used) and checkpoint.pt (atomic; everything needed to resume); with
--fid-every, FID/KID rows in metrics.jsonl and fid.png.

Under torchrun every rank trains a shard of each batch in DistributedDataParallel (NCCL on
GPUs, gloo on CPU); rank 0 alone writes the run folder. A run's batches and latents depend
on the global batch (batch_size * ranks) and the step, not on how it is split, so 2 ranks x
batch B train as 1 process x batch 2B does (exactly so with --sync-bn)."""
import contextlib
import copy
import dataclasses
import math
import os
import time

import torch
from torch.nn.parallel import DistributedDataParallel

import fastgan
from ..losses import d_fake_loss, d_real_loss, g_loss, gradient_penalty, r1_penalty
from . import checkpoint as ckpt_io
from . import data as data_io
from . import distributed, metrics, run_folder
from .config import (DTYPES, PeerLostError, TrainConfig, TrainError, check_machine, data_cache_folder,
                     resolve_device)
from .images import save_grid
from .model_factory import build_models, generate, generated_images, mean_pairwise_distance
from .run_log import Progress, TensorBoardLog, Throughput, plot_fid, plot_losses


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
        check_machine(cfg, self.device, self.world)
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
        self.fid_net = self.fid_real = self.fid_real_gaussian = None
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
            problem = run_folder.prepare(cfg.out, cfg.resume, cfg.overwrite) if self.world.is_main else None
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
            run_folder.write_config(cfg.out, dataclasses.asdict(cfg))
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
        progress = Progress(self.step, cfg.steps, self.log)
        speed = Throughput(cfg.batch_size * self.world.size * cfg.n_critic, self.step)  # real images D sees
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
        run_folder.append_metrics(self.cfg.out, row)
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
            self.fid_real_gaussian = metrics.Gaussian.fit(self.fid_real)
        fake_feats = metrics.features(self.fid_net, fake, self.cfg.batch_size, self.device)
        scores = metrics.scores(self.fid_real, fake_feats, real=self.fid_real_gaussian)
        row = {"step": self.step, "time": round(time.time(), 3), "fid": scores.fid, "kid": scores.kid,
               "kid_std": scores.kid_std}
        self.history.append(row)
        run_folder.append_metrics(self.cfg.out, row)
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
        if self.world.is_main:  # keep the rows up to the checkpoint, not later ones
            self.history = run_folder.keep_metrics_up_to(self.cfg.out, self.step)
        self.log(f"resumed from {path} at step {self.step}")
