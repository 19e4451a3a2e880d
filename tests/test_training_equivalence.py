"""50 Adam steps of G and D, fused against stock modules, fp64 on CPU: same losses and
weights within 1e-8 relative."""
import torch
from torch import nn

import fastgan
from fastgan.models import Discriminator, Generator, weights_init
from test_modules import TutorialD, TutorialG


def train(g, d, loss_fn, batches, steps, ones, zeros):
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    losses = []
    for real, z in batches[:steps]:
        opt_d.zero_grad()
        fake = g(z)
        loss_d = loss_fn(d(real), ones) + loss_fn(d(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = loss_fn(d(fake), ones)
        loss_g.backward()
        opt_g.step()
        losses.append((loss_d.item(), loss_g.item()))
    return losses


def test_fifty_adam_steps_match_stock(backend):
    torch.manual_seed(0)
    nz, batch = 16, 8
    g, d = Generator(nz=nz, ngf=8, nc=3, image_size=64).double(), Discriminator(ndf=8, nc=3, image_size=64).double()
    g.apply(weights_init), d.apply(weights_init)
    tg, td = TutorialG(nz, 8, 3).double(), TutorialD(8, 3).double()
    td.main = td.main[:-1]  # logits; the loss takes the sigmoid
    tg.load_state_dict(g.state_dict()), td.load_state_dict(d.state_dict())
    batches = [(torch.rand(batch, 3, 64, 64, dtype=torch.float64) * 2 - 1,
                torch.randn(batch, nz, 1, 1, dtype=torch.float64)) for _ in range(50)]
    ones, zeros = torch.ones(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64)
    stock_loss = nn.BCEWithLogitsLoss()
    fused_losses = train(g, d, fastgan.nn.BCEWithLogitsLoss(), batches, 50, 1.0, 0.0)
    stock_losses = _train_stock(tg, td, stock_loss, batches, ones, zeros)
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(stock_losses), rtol=1e-8, atol=0)
    for (name, a), b in zip(list(g.state_dict().items()) + list(d.state_dict().items()),
                            list(tg.state_dict().values()) + list(td.state_dict().values())):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12, msg=name)
        else:
            assert torch.equal(a, b), name


def _train_stock(tg, td, loss_fn, batches, ones, zeros):
    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = tg

        def forward(self, z):
            return self.m.main(z)

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = td

        def forward(self, x):
            return self.m.main(x).view(-1)

    return train(G(), D(), loss_fn, batches, 50, ones, zeros)
