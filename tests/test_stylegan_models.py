"""fastgan.models.StyleGAN2Generator / StyleGAN2Discriminator: shapes, the fastgan path against
the same weights on the stock-op reference path (impl="ref") in float64 (images, logits, the R1
penalty's gradient, every parameter's gradient), a training step with R1 that lowers nothing to
NaN, and torch.compile of a synthesis layer without a graph break."""
import pytest
import torch
import torch.nn.functional as F

from fastgan import _backend
from fastgan.models import StyleGAN2Discriminator, StyleGAN2Generator
from fastgan.stylegan.networks import SynthesisLayer

SMALL = dict(img_resolution=16, channel_base=128, channel_max=16)


def models(impl=None, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    G = StyleGAN2Generator(z_dim=16, w_dim=16, mapping_layers=2, impl=impl, **SMALL).to(dtype)
    D = StyleGAN2Discriminator(mbstd_group=2, impl=impl, **SMALL).to(dtype)
    return G, D


def step_quantities(G, D, z, real):
    img = G(z, noise_mode="const")
    fake_logits = D(img)
    real = real.detach().requires_grad_()
    real_logits = D(real)
    (r1,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    loss = F.softplus(-fake_logits).mean() + F.softplus(real_logits).mean() + r1.square().sum([1, 2, 3]).mean()
    grads = torch.autograd.grad(loss, [*G.parameters(), *D.parameters()], allow_unused=True)
    return [img, fake_logits, real_logits, r1, *(g for g in grads if g is not None)]


def test_shapes_and_channels():
    G, D = models()
    z = torch.randn(4, 16, dtype=torch.float64)
    img = G(z)
    assert img.shape == (4, 3, 16, 16) and D(img).shape == (4, 1)
    assert [layer.weight.shape[0] for layer in G.layers] == [16, 16, 16, 8, 8]  # min(128 // r, 16)
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(img_resolution=48)


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_fastgan_path_is_the_reference_path_in_float64():
    z = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    real = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fused = step_quantities(*models(None), z, real)
    ref = step_quantities(*models("ref"), z, real)
    assert len(fused) == len(ref)
    for a, e in zip(fused, ref):
        assert ((a - e).norm() <= 1e-9 * e.norm()).item(), (a - e).norm() / e.norm()


def test_a_training_step_with_r1(backend):
    G, D = models(dtype=torch.float32)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-3), torch.optim.Adam(D.parameters(), 2e-3)
    z, real = torch.randn(4, 16), torch.randn(4, 3, 16, 16)
    for _ in range(2):
        quantities = step_quantities(G, D, z, real)
        assert all(torch.isfinite(q).all() for q in quantities)
        loss_g = F.softplus(-D(G(z))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad()
        real_r = real.clone().requires_grad_()
        logits = D(real_r)
        (r1,) = torch.autograd.grad(logits.sum(), real_r, create_graph=True)
        r1_penalty = r1.square().sum([1, 2, 3]).mean()
        (F.softplus(D(G(z).detach())).mean() + F.softplus(-logits).mean() + r1_penalty).backward()
        opt_d.step()


@pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")
def test_compile_a_synthesis_layer_without_graph_breaks():
    torch.manual_seed(3)
    layer = SynthesisLayer(8, 8, 16, 8, up=2)
    x, w = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, w, "const"), layer(x, w, "const"))
