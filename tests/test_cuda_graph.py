"""A whole G+D training step captured in a CUDA graph replays exactly like eager (GPU only)."""
import pytest
import torch

import fastgan
from fastgan.models import Discriminator, Generator

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_graphed_step_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(RuntimeError, match="CUDA graphs need a CUDA device"):
        fastgan.graph.GraphedStep(lambda x: x, torch.zeros(1))


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


@pytest.fixture
def exact_convolutions():
    """Deterministic cuDNN algorithms in full float32: otherwise the convolutions' own rounding
    (TF32, atomics in the weight gradient, an algorithm chosen differently under capture) moves
    the two runs apart by more than the tolerance, whatever fastgan's kernels do."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = True, False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@needs_cuda
def test_graph_replay_equals_eager(exact_convolutions):
    if fastgan.backend() != "fused":
        pytest.skip("reference backend")
    batches = [(torch.rand(8, 3, 32, 32, device="cuda") * 2 - 1, torch.randn(8, 16, device="cuda")) for _ in range(6)]
    eager = make(0)
    eager_losses = [step(*eager, r, z) for r, z in batches]

    graphed = make(0)
    graphed_step = fastgan.graph.GraphedStep(lambda r, z: step(*graphed, r, z), *batches[0],
                                             optimizers=graphed[2:], warmup=1)
    graph_losses = [eager_losses[0]]  # the warm-up ran batch 0 eagerly
    for r, z in batches[1:]:
        graph_losses.append(tuple(t.clone() for t in graphed_step(r, z)))
    for (a, b), (c, d) in zip(eager_losses, graph_losses):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, d, rtol=1e-5, atol=1e-6)
    for p, q in zip(list(eager[0].parameters()) + list(eager[1].parameters()),
                    list(graphed[0].parameters()) + list(graphed[1].parameters())):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    for p, q in zip(eager[0].buffers(), graphed[0].buffers()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
