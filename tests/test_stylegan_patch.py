"""fastgan.stylegan.patch(): a process that has imported an NVlabs-style or a rosinality-style
checkout (tests/stylegan_checkouts.py: their interfaces, each op its stock reference path)
gives the same images, logits and gradients, R1 penalty included, on fastgan's ops, within
1e-9 relative in float64; fastgan's ops really run; patch() is safe twice; unpatch() restores."""
import sys

import pytest
import torch
import torch.nn.functional as F

import fastgan.stylegan as sg
import stylegan_checkouts
from fastgan import _backend
from fastgan.stylegan import bias_act as fastgan_bias_act
from fastgan.stylegan import rosinality as fastgan_rosinality

ROOTS = ("torch_utils", "training", "op", "model")


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    stylegan_checkouts.write(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sg.unpatch(verbose=False)
    for name in list(sys.modules):
        if name.split(".")[0] in ROOTS:
            del sys.modules[name]


def training_step(G, D, z, real, no_weight_gradients):
    """The quantities a StyleGAN2 step computes: images, logits, the R1 penalty's gradient, and
    every parameter's gradient of G's loss plus D's loss with R1."""
    img = G(z)
    fake_logits = D(img)
    real = real.detach().requires_grad_()
    real_logits = D(real)
    with no_weight_gradients():
        (r1_grads,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    r1_penalty = r1_grads.square().sum([1, 2, 3]).mean()
    loss = F.softplus(-fake_logits).mean() + F.softplus(real_logits).mean() + 5 * r1_penalty
    params = [*G.parameters(), *D.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # toRGB layers have no noise
    return [img, fake_logits, real_logits, r1_grads, *(g for g in grads if g is not None)]


def fastgan_ops_run(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith("fastgan::")}


def assert_same(actual, expected, rtol=1e-9):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert ((a - e).norm() <= rtol * e.norm()).item(), f"{(a - e).norm() / e.norm():.3g}"


def test_nvlabs_checkout(backend, checkout, capsys):
    import training.networks as networks
    from torch_utils.ops import bias_act, conv2d_gradfix, grid_sample_gradfix, upfirdn2d  # noqa: F401 (augment.py's)

    torch.manual_seed(0)
    G, D = networks.Generator().double(), networks.Discriminator().double()
    z, real = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 3, 16, 16, dtype=torch.float64)
    originals = bias_act.bias_act, upfirdn2d.upfirdn2d
    step = lambda: training_step(G, D, z, real, conv2d_gradfix.no_weight_gradients)  # noqa: E731
    expected = step()

    patched = sg.patch()
    assert "now on fastgan's ops: torch_utils.ops.bias_act.bias_act" in capsys.readouterr().err
    assert {"torch_utils.ops.bias_act.bias_act", "torch_utils.ops.upfirdn2d.upsample2d",
            "torch_utils.ops.upfirdn2d.filter2d", "torch_utils.ops.conv2d_gradfix.conv2d",
            "torch_utils.ops.grid_sample_gradfix.grid_sample"} <= set(patched)
    assert bias_act.bias_act is fastgan_bias_act.bias_act
    assert_same(step(), expected)
    if backend == "fused":
        assert {"fastgan::stylegan_bias_act", "fastgan::upfirdn2d"} <= fastgan_ops_run(step)

    assert sg.patch(verbose=False) == []  # twice: nothing new
    restored = sg.unpatch()
    assert set(restored) == set(patched)
    assert (bias_act.bias_act, upfirdn2d.upfirdn2d) == originals
    assert_same(step(), expected, rtol=0)


def test_rosinality_checkout(backend, checkout):
    import model
    import op

    torch.manual_seed(1)
    G, D = model.Generator().double(), model.Discriminator().double()
    z, real = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    step = lambda: training_step(G, D, z, real, torch.enable_grad)  # noqa: E731
    expected = step()
    patched = sg.patch(verbose=False)
    # The names model.py bound with `from op import ...` follow, as do the package's re-exports.
    assert {"op.fused_act.fused_leaky_relu", "op.upfirdn2d.upfirdn2d", "model.upfirdn2d", "model.fused_leaky_relu",
            "op.fused_leaky_relu"} <= set(patched)
    assert model.upfirdn2d is fastgan_rosinality.upfirdn2d
    assert op.fused_leaky_relu is fastgan_rosinality.fused_leaky_relu
    assert_same(step(), expected)
    if backend == "fused":
        assert {"fastgan::stylegan_bias_act", "fastgan::upfirdn2d"} <= fastgan_ops_run(step)
    sg.unpatch(verbose=False)
    assert model.upfirdn2d is op.upfirdn2d is sys.modules["op.upfirdn2d"].upfirdn2d
    assert model.upfirdn2d is not fastgan_rosinality.upfirdn2d


def test_patch_without_a_checkout_says_what_to_do():
    assert not any(name.split(".")[0] in ROOTS for name in sys.modules)
    with pytest.raises(RuntimeError, match="found no StyleGAN ops to patch"):
        sg.patch()
    assert sg.unpatch() == []


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_patched_models_trace_without_graph_breaks(checkout):
    import training.networks as networks

    sg.patch(verbose=False)
    torch.manual_seed(2)
    layer = networks.SynthesisLayer(6, 6, 8, 8, up=2).double()
    x, w = torch.randn(2, 6, 4, 4, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, w), layer(x, w))
