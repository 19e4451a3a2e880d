"""The GAN losses against their formulas written with stock ops, the gradient penalties through
the fused layers' double backward against the stock layers, and `fastgan train --loss` /
`--r1` learning on the bundled digits."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import fastgan
from fastgan.functional import GAN_LOSSES, gan_loss, gradient_penalty, r1_penalty
from fastgan.fuse import plan
from fastgan.models import Discriminator

FORMULAS = {  # (D's loss, G's loss), written out with stock ops
    "bce": (lambda r, f: F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
            + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)),
            lambda f: F.binary_cross_entropy_with_logits(f, torch.ones_like(f))),
    "hinge": (lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
              lambda f: -f.mean()),
    "lsgan": (lambda r, f: ((r - 1) ** 2).mean() / 2 + (f ** 2).mean() / 2, lambda f: ((f - 1) ** 2).mean() / 2),
    "wgan-gp": (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
}


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_losses_match_their_formulas(backend, kind):
    g = torch.Generator().manual_seed(0)
    real = (torch.randn(37, dtype=torch.float64, generator=g) * 3).requires_grad_()
    fake = (torch.randn(37, dtype=torch.float64, generator=g) * 3).requires_grad_()
    d_formula, g_formula = FORMULAS[kind]
    for got, expected, inputs in [(gan_loss(real, fake, kind), d_formula(real, fake), [real, fake]),
                                  (gan_loss(None, fake, kind), g_formula(fake), [fake])]:
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for a, e in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(expected, inputs)):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


LOGIT_CASES = [("bce", 0.9), ("hinge", 1.0), ("hinge", 0.0), ("lsgan", 1.0), ("lsgan", 0.0), ("linear", 1.0),
               ("linear", 0.0)]


@pytest.mark.parametrize("kind,target", LOGIT_CASES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logit_loss_matches_its_formula(backend, kind, target, reduction, dtype):
    from fastgan import reference
    from fastgan._checks import REDUCTIONS
    from fastgan.functional import logit_loss
    from helpers import assert_close

    g = torch.Generator().manual_seed(3)
    x64 = torch.randn(53, dtype=torch.float64, generator=g) * 3
    x = x64.to(dtype).requires_grad_()
    got = logit_loss(x, target, kind, reduction)
    ref_x = x64.clone().requires_grad_()
    expected = reference.logit_loss(ref_x, target, kind, REDUCTIONS[reduction])
    assert got.dtype == dtype and got.shape == expected.shape
    assert_close(got, expected, dtype, scale=4.0)
    grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=g)
    assert_close(torch.autograd.grad(got, x, grad_out.to(dtype))[0], torch.autograd.grad(expected, ref_x, grad_out)[0],
                 dtype)


@pytest.mark.parametrize("kind", ["bce", "lsgan", "hinge", "linear"])
def test_logit_loss_double_backward(backend, kind):
    from fastgan.functional import logit_loss

    x = torch.randn(9, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: logit_loss(t, 1.0, kind), (x,))
    assert torch.autograd.gradgradcheck(lambda t: logit_loss(t, 1.0, kind), (x,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_reductions_on_concurrent_streams_give_the_default_streams_bits():
    """The last-block reduction keeps ticket counters per stream (told apart by their driver
    ids, so an external stream never shares another's): streams running at once, one of them a
    torch.cuda.ExternalStream, must each get the bits of a run on the default stream."""
    from fastgan.functional import logit_loss

    x = torch.randn(1 << 22, device="cuda", generator=torch.Generator("cuda").manual_seed(5))
    expected = logit_loss(x, 1.0, "bce", "mean")
    pool = [torch.cuda.Stream() for _ in range(3)]
    streams = pool[:2] + [torch.cuda.ExternalStream(pool[2].cuda_stream)]
    torch.cuda.synchronize()
    got = []
    for _ in range(4):
        for stream in streams:
            with torch.cuda.stream(stream):
                got.append(logit_loss(x, 1.0, "bce", "mean"))
    torch.cuda.synchronize()
    for value in got:
        assert torch.equal(value, expected)


def test_hinge_propagates_nan_like_stock(backend):
    from fastgan.functional import logit_loss

    x = torch.tensor([0.5, float("nan"), 2.0], requires_grad=True)
    loss = logit_loss(x, 1.0, "hinge", "none")
    assert torch.isnan(loss[1]) and loss[2] == 0 and loss[0] == 0.5


@pytest.mark.parametrize("args,message", [
    ((torch.zeros(3), 0.5, "hinge"), "the hinge loss takes target 1.0 (real) or 0.0 (fake), got 0.5"),
    ((torch.zeros(3), 2.0, "linear"), "the linear loss takes target 1.0 (real) or 0.0 (fake), got 2"),
    ((torch.zeros(3), 1.0, "wasserstein"), "unknown logit loss 'wasserstein'; expected one of"),
    ((torch.zeros(3, dtype=torch.long), 1.0, "lsgan"), "input must be a floating-point tensor"),
])
def test_logit_loss_errors_are_the_same_on_both_paths(args, message):
    from fastgan import _backend
    from fastgan.functional import logit_loss

    errors = []
    for name in (["fused"] if _backend.COMPILED else []) + ["reference"]:
        with fastgan.use_backend(name), pytest.raises((ValueError, TypeError)) as info:
            logit_loss(*args)
        errors.append(str(info.value).splitlines()[0])
        assert message in errors[-1]
    assert len(set(errors)) == 1, errors


def test_logit_loss_opcheck_and_node():
    from fastgan import _backend
    from fastgan.functional import logit_loss

    if not _backend.COMPILED:
        pytest.skip("needs fastgan._C")
    x = torch.randn(7, requires_grad=True)
    for kind, target in LOGIT_CASES:
        for reduction in (0, 1, 2):
            torch.library.opcheck(torch.ops.fastgan.logit_loss.default, (x, target, kind, reduction))
    assert logit_loss(x, 1.0, "hinge").grad_fn.name() == "fastgan::LogitLossBackward"


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'.*'hinge'"):
        gan_loss(None, torch.zeros(2), "wgan")


def critics(norm):
    torch.manual_seed(0)
    stock = fastgan.unfuse(Discriminator(4, 3, 32, norm=norm)).double()
    with torch.no_grad():
        for p in stock.parameters():
            p.normal_(0, 0.3)
    return stock, fastgan.fuse(stock)


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("penalty", ["gp", "r1"])
def test_penalties_through_the_fused_layers_match_stock(penalty, norm):
    """Both penalties differentiate D's input gradient: the fused layers' double backward must
    give the stock layers' penalty and parameter gradients (fp64)."""
    stock, fused = critics(norm)
    g = torch.Generator().manual_seed(1)
    real = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=g)
    fake = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=g)
    values, grads = [], []
    for d in (stock, fused):
        torch.manual_seed(2)  # the same interpolation points
        if penalty == "gp":
            value = gradient_penalty(d, real, fake, 10.0)
        else:
            x = real.clone().requires_grad_(True)
            value = r1_penalty(d(x), x, 5.0)
        values.append(value)
        grads.append(torch.autograd.grad(value, list(d.parameters())))
    torch.testing.assert_close(values[1], values[0], rtol=1e-9, atol=1e-12)
    for name, f, s in zip([n for n, _ in stock.named_parameters()], grads[1], grads[0]):
        torch.testing.assert_close(f, s, rtol=1e-8, atol=1e-10, msg=lambda m: f"{name}: {m}")
    assert values[0] > 0


def test_r1_needs_real_to_require_grad():
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(torch.zeros(2, requires_grad=True), torch.zeros(2, 3), 1.0)


def test_critic_without_batch_norm_uses_the_fused_conv_act_layer():
    d = Discriminator(4, 3, 32, norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    kinds = [kind for _, kind, _, _ in plan(list(d.main))]
    assert kinds.count("conv_act") == 3
    with pytest.raises(ValueError, match="norm must be one of"):
        Discriminator(4, 3, 32, norm="layer")


# --- training ---------------------------------------------------------------------------

pytest.importorskip("sklearn")
from fastgan.app.cli import main  # noqa: E402
from fastgan.app.config import TrainConfig  # noqa: E402
from fastgan.app.train import Trainer  # noqa: E402


@pytest.mark.parametrize("kind,r1", [("bce", 0.0), ("hinge", 0.0), ("lsgan", 0.0), ("wgan-gp", 0.0), ("bce", 1.0)])
def test_each_loss_trains(tmp_path, kind, r1):
    """Nothing blows up over the run, and D learns: D(x) rises above D(G(z)) at once; a WGAN-GP
    critic, whose outputs start near 0 and whose loss starts at the penalty's weight (input
    gradients ~0), first meets its penalty, so its loss falls (with one critic step per G
    step G then catches up with it, so the gap is not a signal there)."""
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=30, nz=8, ngf=8, ndf=8, batch_size=16, log_every=1,
                      sample_every=1000, checkpoint_every=1000, device="cpu", loss=kind, r1=r1, lr=5e-4)
    trainer = Trainer(cfg, log=lambda *_: None).run()
    with open(os.path.join(cfg.out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in rows)
    if kind == "wgan-gp":
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.d.modules())
        assert rows[-1]["loss_d"] < 0.95 * rows[0]["loss_d"], [r["loss_d"] for r in rows]
    else:
        gaps = [r["d_real"] - r["d_fake"] for r in rows]
        assert max(gaps[:10]) > 0.05, gaps[:10]


def test_resume_with_another_loss_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--steps", "1", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--out", out,
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["train", "--steps", "2", "--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--out", out,
                 "--device", "cpu", "--resume", "--loss", "hinge"]) == 2
    err = capsys.readouterr().err
    assert "--loss bce" in err and "hinge" in err


def test_bad_penalty_options(tmp_path, capsys):
    assert main(["train", "--r1", "-1", "--out", str(tmp_path / "a"), "--device", "cpu"]) == 2
    assert "argument --r1: must be >= 0.0" in capsys.readouterr().err
    assert main(["train", "--loss", "wgan-gp", "--gp-weight", "0", "--out", str(tmp_path / "b"), "--device",
                 "cpu"]) == 2
    assert "argument --gp-weight: must be > 0.0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
