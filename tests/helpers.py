"""Stock-PyTorch twins of the fused layers, and comparison helpers."""
import copy

import torch
from torch import nn

TOL = {  # (rtol, atol) against the stock path
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
}


def assert_close(actual, expected, dtype, scale=1.0, msg=""):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol * scale, atol=atol * scale,
                               msg=(lambda m: f"{msg}: {m}") if msg else None)


def stock_activation(name, slope):
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(slope), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
            "identity": nn.Identity()}[name]


def randomise_bn(bn, generator=None):
    """Random affine parameters and running statistics, drawn on the CPU (with generator, when
    given) and copied to the module's device, so that a seed gives the same values everywhere."""

    def fill(t, draw):
        if t is not None:
            t.copy_(draw(torch.empty(t.shape, dtype=t.dtype)))

    with torch.no_grad():
        fill(bn.weight, lambda t: t.normal_(1.0, 0.5, generator=generator))
        fill(bn.bias, lambda t: t.normal_(0.0, 0.5, generator=generator))
        fill(bn.running_mean, lambda t: t.normal_(generator=generator))
        fill(bn.running_var, lambda t: t.uniform_(0.5, 2.0, generator=generator))


def twin(module):
    return copy.deepcopy(module)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def cli_error(capsys, *argv):
    """Runs the command line; it must exit 2 with one line on stderr and no traceback."""
    from fastgan.app.cli import main

    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastgan: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def randomised_copy_and_fused(make):
    """(stock, fused): make()'s model in float64 with random BatchNorm and InstanceNorm
    parameters and statistics, and fastgan.fuse's copy of it."""
    import fastgan

    stock = make().double()
    for m in stock.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)):
            randomise_bn(m)
    return stock, fastgan.fuse(stock, inplace=False)


def assert_trains_like_stock(stock, fused, shape, eval_shape, steps=5):
    """`steps` training steps on random input of `shape`, each followed by one SGD step (momentum
    0.9) of both models: outputs, the input's and parameters' gradients each step, then the
    parameters and buffers (running statistics, spectral norm's u and v) after them, then an eval
    forward on `eval_shape` (float64). Divergence compounds through the updates, so a fused path
    that only nearly matches fails here."""
    opt_s = torch.optim.SGD(stock.parameters(), lr=0.01, momentum=0.9)
    opt_f = torch.optim.SGD(fused.parameters(), lr=0.01, momentum=0.9)
    for step in range(steps):
        x = torch.randn(shape, dtype=torch.float64)
        xs, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
        opt_s.zero_grad(), opt_f.zero_grad()
        out_s, out_f = stock(xs), fused(xf)
        assert_close(out_f, out_s, torch.float64, msg=f"step {step} output")
        grad = torch.randn_like(out_s)
        out_s.backward(grad), out_f.backward(grad)
        assert_close(xf.grad, xs.grad, torch.float64, msg=f"step {step} input gradient")
        for (name, p), q in zip(stock.named_parameters(), fused.parameters()):
            assert_close(q.grad, p.grad, torch.float64, msg=f"step {step} {name} gradient")
        opt_s.step(), opt_f.step()
    for (name, p), q in zip(stock.named_parameters(), fused.parameters()):
        assert_close(q, p, torch.float64, msg=f"{name} after {steps} steps")
    for (name, b), c in zip(stock.named_buffers(), fused.buffers()):
        assert_close(c, b, torch.float64, msg=name)
    stock.eval(), fused.eval()
    x = torch.randn(eval_shape, dtype=torch.float64)
    assert_close(fused(x), stock(x), torch.float64, msg="eval")
