"""What a run reports besides metrics.jsonl and its checkpoints: loss.png and fid.png, TensorBoard
events (--tensorboard), images/s and the progress line."""
import collections
import os
import sys
import time

from . import run_folder
from .images import grid, to_uint8


def _plot_metrics(out, key, name, draw):
    """out/name from the rows of metrics.jsonl that hold `key`: draw(plt, rows) makes the figure,
    which is written atomically (needs matplotlib; skipped quietly without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [r for r in run_folder.read_metrics(out) if key in r]
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


class Throughput:
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


class Progress:
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
