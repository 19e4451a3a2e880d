"""A whole G+D training step captured in a CUDA graph replays exactly like eager (GPU only)."""
import pytest
import torch

import fastgan
from fastgan.models import Discriminator, Generator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def make(seed):
    torch.manual_seed(seed)
    g, d = Generator(nz=16, ngf=8, image_size=32).cuda(), Discriminator(ndf=8, image_size=32).cuda()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=True)
    return g, d, opt_g, opt_d


def step(g, d, opt_g, opt_d, real, z):
    loss = fastgan.functional.bce_with_logits
    opt_d.zero_grad(set_to_none=False)
    fake = g(z)
    loss_d = loss(d(real), 1.0) + loss(d(fake.detach()), 0.0)
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=False)
    loss_g = loss(d(fake), 1.0)
    loss_g.backward()
    opt_g.step()
    return loss_d.detach(), loss_g.detach()


def test_graph_replay_equals_eager():
    if fastgan.backend() != "fused":
        pytest.skip("reference backend")
    batches = [(torch.rand(8, 3, 32, 32, device="cuda") * 2 - 1, torch.randn(8, 16, device="cuda")) for _ in range(6)]
    eager = make(0)
    eager_losses = [step(*eager, r, z) for r, z in batches]

    graphed = make(0)
    static_real, static_z = batches[0][0].clone(), batches[0][1].clone()
    # Warm up on a side stream (as CUDA graph capture requires), then capture one step.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = step(*graphed, static_real, static_z)
    torch.cuda.current_stream().wait_stream(side)
    graph_losses = [tuple(t.clone() for t in out)]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step(*graphed, static_real, static_z)
    for r, z in batches[1:]:
        static_real.copy_(r), static_z.copy_(z)
        graph.replay()
        graph_losses.append(tuple(t.clone() for t in static_out))
    for (a, b), (c, d) in zip(eager_losses, graph_losses):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, d, rtol=1e-5, atol=1e-6)
    for p, q in zip(list(eager[0].parameters()) + list(eager[1].parameters()),
                    list(graphed[0].parameters()) + list(graphed[1].parameters())):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    for p, q in zip(eager[0].buffers(), graphed[0].buffers()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
