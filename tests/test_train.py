"""`fastgan train` / `fastgan sample`: backends agree, resume is exact, checkpoints are atomic,
bad input gets one clear line and a non-zero exit, the conditional model draws the asked class."""
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("PIL")

from fastgan.app import checkpoint as ckpt_io  # noqa: E402
from fastgan.app.cli import main  # noqa: E402
from helpers import cli_error  # noqa: E402
from fastgan.app.config import TrainConfig, TrainError  # noqa: E402
from fastgan.app.train import Trainer, ema_decay_at  # noqa: E402

TINY = dict(nz=8, ngf=4, ndf=4, batch_size=8, log_every=1, sample_every=1000, checkpoint_every=1000, device="cpu")
CPU_BF16 = dict(amp="bf16", channels_last=True)  # CPU autocast, as the bf16 step benchmark runs it


def run(tmp_path, name="run", **kw):
    cfg = TrainConfig(out=str(tmp_path / name), **{**TINY, **kw})
    return Trainer(cfg, log=lambda *_: None).run()


def metrics(trainer):
    with open(os.path.join(trainer.cfg.out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(autouse=True)
def restore_backend():
    """Trainer sets the process-wide backend from --backend; keep that inside each test."""
    import fastgan

    previous = fastgan.backend()
    yield
    fastgan.set_backend(previous)


@pytest.mark.skipif(not __import__("fastgan")._backend.COMPILED, reason="needs fastgan._C")
@pytest.mark.parametrize("precision,tolerance", [({}, 1e-4), (CPU_BF16, 3e-2)])
def test_fused_and_reference_backends_agree(tmp_path, precision, tolerance):
    fused = metrics(run(tmp_path, "fused", steps=4, backend="fused", **precision))
    ref = metrics(run(tmp_path, "ref", steps=4, backend="reference", **precision))
    for a, b in zip(fused, ref):
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "diversity_fake"):
            assert a[key] == pytest.approx(b[key], rel=tolerance, abs=tolerance / 10), key


@pytest.mark.parametrize("precision", [{}, CPU_BF16])
def test_resume_is_exact(tmp_path, precision):
    whole = run(tmp_path, "whole", steps=6, checkpoint_every=3, **precision)
    half = run(tmp_path, "half", steps=3, checkpoint_every=3, **precision)
    resumed = run(tmp_path, "half", steps=6, checkpoint_every=3, resume=True, **precision)
    assert resumed.step == 6
    for a, b in zip(list(whole.g.state_dict().values()) + list(whole.d.state_dict().values()),
                    list(resumed.g.state_dict().values()) + list(resumed.d.state_dict().values())):
        assert torch.equal(a, b)
    assert [r["loss_d"] for r in metrics(whole)] == [r["loss_d"] for r in metrics(resumed)]
    del half


def test_checkpoint_write_killed_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "step": 1}, path)

    def dying_save(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "step": 2}, path)
    monkeypatch.undo()
    assert ckpt_io.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temp file left behind


def test_bad_input_errors(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert "does not exist" in cli_error(capsys, "train", "--data", str(tmp_path / "missing"), "--out", out)
    (tmp_path / "empty").mkdir()
    assert "holds no images" in cli_error(capsys, "train", "--data", str(tmp_path / "empty"), "--out", out)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    assert "could be read" in cli_error(capsys, "train", "--data", str(bad), "--out", out)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"garbage")
    assert "not a file written by torch.save" in cli_error(capsys, "train", "--resume", "--out", str(tmp_path / "ckpt"),
                                                           "--steps", "1")
    if not torch.cuda.is_available():
        assert "CUDA is not available" in cli_error(capsys, "train", "--device", "cuda", "--out", out)
    assert "--amp fp16 needs a CUDA device" in cli_error(capsys, "train", "--device", "cpu", "--amp", "fp16",
                                                          "--out", out)
    folder = tmp_path / "flat"
    folder.mkdir()
    _write_png(folder / "x.png")
    assert "needs labelled data" in cli_error(capsys, "train", "--data", str(folder), "--conditional", "--out", out)
    with pytest.raises(SystemExit) as exc:  # argparse: one usage line and exit 2
        main(["train", "--image-size", "48"])
    assert exc.value.code == 2


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _write_png(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    t = Trainer(TrainConfig(data=str(folder), out=str(tmp_path / "o"), steps=1, **TINY), log=lambda *_: None)
    assert t.data.skipped == 1 and len(t.data.images) == 3


def test_checkpoint_of_another_architecture(tmp_path, capsys):
    run(tmp_path, "a", steps=1)
    err = cli_error(capsys, "train", "--resume", "--out", str(tmp_path / "a"), "--ngf", "8", "--nz", "8", "--ndf", "4")
    assert "--ngf" in err


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    t = run(tmp_path, "n", steps=2, checkpoint_every=2)
    with torch.no_grad():
        for p in t.d.parameters():
            p.fill_(float("nan"))
    t.cfg.steps = 4
    with pytest.raises(TrainError, match="at step 3"):
        t.run()
    assert ckpt_io.load(os.path.join(t.cfg.out, "checkpoint.pt"))["step"] == 2


def test_conditional_draws_the_asked_class(tmp_path):
    t = run(tmp_path, "c", steps=2, conditional=True, checkpoint_every=2)
    assert t.num_classes == 10
    z = torch.randn(5, 8)
    labels = torch.full((5,), 7)
    assert t.g(z, labels).shape == (5, 1, 32, 32)
    assert t.d(t.g(z, labels), labels).shape == (5,)
    with pytest.raises(ValueError, match="labels must lie in"):
        t.g(z, torch.full((5,), 10))
    out = str(tmp_path / "seven.png")
    assert main(["sample", "--checkpoint", os.path.join(t.cfg.out, "checkpoint.pt"), "--out", out, "--class", "7",
                 "--n", "8"]) == 0
    assert os.path.getsize(out) > 0


def test_ema_decay_ramps_up_with_the_images_seen():
    assert ema_decay_at(0.999, 0, 64, 0.05) == 0.0  # the first step copies G
    for images in (64, 6400, 64000):  # while ramping up, the half-life is 5 % of the images seen
        decay = ema_decay_at(0.999, images, 64, 0.05)
        assert decay < 0.999
        assert decay ** (images * 0.05 / 64) == pytest.approx(0.5, rel=1e-12)
    assert ema_decay_at(0.999, 10**7, 64, 0.05) == 0.999  # a long run: the decay asked for
    assert ema_decay_at(0.999, 0, 64, 0.0) == ema_decay_at(0.999, 64000, 64, 0.0) == 0.999  # no ramp-up
    assert ema_decay_at(1.0, 640, 64, 0.05) == 0.5 ** 2  # decay 1 ramps up for ever


def test_trainer_ema_follows_the_ramped_decay(tmp_path):
    """G's EMA after 3 steps equals the EMA of G after steps 1, 2 and 3 (each a run of its own:
    runs are bit-reproducible) with the decays ema_decay_at gives."""
    options = dict(dtype="float64", ema=True, ema_decay=0.9, ema_rampup=0.5)
    gs = [run(tmp_path, f"steps{k}", steps=k, **options).g.state_dict() for k in (1, 2, 3)]
    ema = run(tmp_path, "ema", steps=3, **options).g_ema.state_dict()
    batch = TINY["batch_size"]
    for name, value in ema.items():
        if not value.is_floating_point() or "running" in name:
            continue
        expected = gs[0][name].clone()
        for k in (2, 3):
            decay = ema_decay_at(0.9, (k - 1) * batch, batch, 0.5)
            assert 0.0 < decay < 0.9
            expected = decay * expected + (1 - decay) * gs[k - 1][name]
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-14)
        assert not torch.equal(value, gs[2][name])  # it is an average, not G


def test_a_logged_run_opens_with_what_it_trains_and_shows_its_first_step(tmp_path):
    lines = []
    cfg = TrainConfig(out=str(tmp_path / "logged"), **{**TINY, "steps": 40, "log_every": 1})
    Trainer(cfg, log=lines.append).run()
    assert lines[0] == (f"fastgan train: dcgan (bce loss) on digits (1797 images, 1x32x32), steps 1-40 at batch 8; "
                        f"device cpu, backend {__import__('fastgan').backend()}; writing {cfg.out}")
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == [f"{k}/40" for k in range(1, 40, 2)] + ["40/40"]  # the first step, then every 5 %


def test_n_critic_takes_n_d_steps_per_g_step_and_resumes_exactly(tmp_path):
    options = dict(loss="wgan-gp", n_critic=3, checkpoint_every=2)
    whole = run(tmp_path, "whole", steps=4, **options)
    assert whole.opt_d.state_dict()["state"][0]["step"] == 12  # Adam's own count of D's steps
    assert whole.opt_g.state_dict()["state"][0]["step"] == 4
    assert [r["d_steps"] for r in metrics(whole)] == [3, 6, 9, 12]
    run(tmp_path, "half", steps=2, **options)
    resumed = run(tmp_path, "half", steps=4, resume=True, **options)
    assert resumed.d_steps == 12
    for a, b in zip(list(whole.g.state_dict().values()) + list(whole.d.state_dict().values()),
                    list(resumed.g.state_dict().values()) + list(resumed.d.state_dict().values())):
        assert torch.equal(a, b)
    # each D step reads a batch of its own, in order, and a resume continues the sequence
    seen = []

    class Recording(Trainer):
        def _batch(self, index):
            seen.append(index)
            return super()._batch(index)

    Recording(TrainConfig(out=str(tmp_path / "half"), **{**TINY, **options, "steps": 5, "resume": True}),
              log=lambda *_: None).run()
    assert seen == [12, 13, 14]


def test_n_critic_refuses_cuda_graphs():
    with pytest.raises(TrainError, match="--n-critic > 1 cannot be used with --cuda-graphs"):
        TrainConfig(n_critic=2, cuda_graphs=True).validate()
    with pytest.raises(TrainError, match="--n-critic: must be >= 1"):
        TrainConfig(n_critic=0).validate()


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "e2e"
    cfg = tmp_path / "run.toml"
    cfg.write_text('steps = 3\nbatch-size = 8\nngf = 4\nndf = 4\nnz = 8\nlog_every = 1\n')
    proc = subprocess.run([sys.executable, "-m", "fastgan", "train", "--config", str(cfg), "--out", str(out),
                           "--ema", "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("checkpoint.pt", "metrics.jsonl", "config.json", "real.png", "loss.png", "samples/step_0000003.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["steps"] == 3
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"step", "time", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "diversity_fake",
            "diversity_real"} <= set(row)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["G_ema"] is not None
    strip = tmp_path / "strip.png"
    proc = subprocess.run([sys.executable, "-m", "fastgan", "sample", "--checkpoint", str(out / "checkpoint.pt"),
                           "--out", str(strip), "--interpolate", "--n", "6"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert strip.exists()


def test_zip_data_with_labels(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for label in ("cat", "dog"):
            for i in range(2):
                png = tmp_path / f"{label}{i}.png"
                _write_png(png)
                z.write(png, f"{label}/{i}.png")
    t = Trainer(TrainConfig(data=str(archive), out=str(tmp_path / "o"), steps=1, channels=3, **TINY),
                log=lambda *_: None)
    assert t.data.class_names == ["cat", "dog"] and t.data.images.shape == (4, 3, 32, 32)


def _write_png(path):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)


def test_resume_drops_metrics_rows_past_the_checkpoint(tmp_path):
    """A run killed after logging steps it never checkpointed: resuming rewrites metrics.jsonl
    without those rows, so no step appears twice."""
    first = run(tmp_path, steps=2)
    with open(os.path.join(first.cfg.out, "metrics.jsonl"), "a") as f:
        for step in (3, 4):
            f.write(json.dumps({"step": step, "loss_d": 0.0, "loss_g": 0.0}) + "\n")
    resumed = run(tmp_path, steps=3, resume=True)
    assert [r["step"] for r in metrics(resumed)] == [1, 2, 3]


def test_tensorboard_events_hold_the_metrics_and_the_grids(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = run(tmp_path, "tb", steps=4, log_every=2, sample_every=2, tensorboard=True)
    events = EventAccumulator(os.path.join(trainer.cfg.out, "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = metrics(trainer)
    for key, tag in (("loss_d", "loss/D"), ("loss_g", "loss/G"), ("d_real", "D output/real"),
                     ("images_per_s", "speed/images per s"), ("diversity_fake", "diversity/fake")):
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert got == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows], tag
    grids = events.Images("samples")
    assert [g.step for g in grids] == [2, 4] and grids[0].width == grids[0].height == 8 * (32 + 2) + 2


def test_tensorboard_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    with pytest.raises(TrainError, match=r"^--tensorboard needs the tensorboard package: pip install "
                                         r"'fastgan\[tensorboard\]'$"):
        Trainer(TrainConfig(out=str(tmp_path / "o"), tensorboard=True, **TINY), log=lambda *_: None)
    assert not (tmp_path / "o").exists()


def test_data_cache_option():
    from fastgan.app import cache
    from fastgan.app.config import data_cache_folder

    assert data_cache_folder("none") is None
    assert data_cache_folder("") == cache.default_folder() == os.environ["FASTGAN_DATA_CACHE"]  # tests/conftest.py
    assert data_cache_folder("some/folder") == "some/folder"
