"""The op contract: opcheck (schema, fake kernels, autograd registration), torch.compile
with fullgraph=True, kernels registered for every op, and the compiled tables equal to the
Python fallback's copies."""
import re
from pathlib import Path

import pytest
import torch

import fastgan
from fastgan import _backend
from fastgan.info import op_kernels
from fastgan.models import Discriminator, Generator

pytestmark = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")


def sample_inputs(device):
    g = torch.Generator().manual_seed(0)
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(3, 5, 4, 6, generator=g, dtype=dtype).to(device).contiguous(memory_format=fmt)
            w = torch.rand(5, generator=g, dtype=dtype).to(device) + 0.5
            b = torch.randn(5, generator=g, dtype=dtype).to(device)
            rm = torch.randn(5, generator=g, dtype=dtype).to(device)
            rv = torch.rand(5, generator=g, dtype=dtype).to(device) + 0.5
            out.append((x, w, b, rm, rv))
    return out


def test_every_op_has_a_kernel_for_each_built_device():
    kernels = op_kernels()
    csrc = Path(__file__).resolve().parent.parent / "csrc"
    # FASTGAN_OP(library, entry, name, "name(...) -> ...", signature)
    declared = re.findall(r'^FASTGAN_OP\(\w+, \w+, (\w+),\s*"(\w+)\(', (csrc / "op_list.inc").read_text(), re.M)
    assert all(name == schema_name for name, schema_name in declared)
    schemas = {name for name, _ in declared}  # fastgan info lists what the dispatcher has
    assert len(schemas) >= 18 and set(kernels) == schemas
    for op, keys in kernels.items():
        assert "CPU" in keys, op
        if _backend._C.build_info()["cuda"]:
            assert "CUDA" in keys, op


def test_the_compiled_tables_are_the_python_fallbacks():
    from fastgan import _checks, activations, reference

    _C = _backend._C
    # Same names, same order (the error messages list them sorted), same stock modules.
    assert _C.activations() == {name: activations.module_name(name) for name in sorted(activations.ACTIVATIONS)}
    assert _C.logit_losses() == sorted(reference.LOGIT_LOSSES) == list(_checks.LOGIT_LOSSES)
    assert _C.reductions() == _checks.REDUCTIONS


def test_opcheck(device):
    ops = torch.ops.fastgan
    for x, w, b, rm, rv in sample_inputs(device):
        xr = x.clone().requires_grad_()
        wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
        counter = torch.zeros((), dtype=torch.long, device=device)
        torch.library.opcheck(ops.batch_norm_act, (xr, wr, br, None, None, None, True, 0.1, 1e-5, "relu", 0.0))
        torch.library.opcheck(ops.batch_norm_act, (xr, wr, br, rm, rv, None, False, 0.1, 1e-5, "leaky_relu", 0.2))
        torch.library.opcheck(ops.batch_norm_act, (xr, wr, br, rm.clone(), rv.clone(), counter, True, None, 1e-5,
                                                   "leaky_relu", 0.2))
        torch.library.opcheck(ops.batch_norm_act, (xr, None, None, None, None, None, True, 0.1, 1e-5, "tanh", 0.0))
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        torch.library.opcheck(ops.batch_norm_act_backward, (torch.randn_like(x), x, w, b, mean, var, True, 1e-5,
                                                            "relu", 0.0))
        torch.library.opcheck(ops.batch_norm_stats, (x,))
        torch.library.opcheck(ops.batch_norm_act_backward_reduce, (torch.randn_like(x), x, w, b, mean, var, 1e-5,
                                                                   "leaky_relu", 0.2))
        torch.library.opcheck(ops.batch_norm_act_backward_elemt, (torch.randn_like(x), x, None, b, mean, var, w, b,
                                                                  1e-5, "tanh", 0.0))
        torch.library.opcheck(ops.batch_norm_update_stats,
                              (rm.clone(), rv.clone(), torch.zeros((), dtype=torch.long, device=device), mean, var,
                               0.1, 72))
        torch.library.opcheck(ops.batch_norm_update_stats,
                              (rm.clone(), rv.clone(), torch.ones((), dtype=torch.long, device=device), mean, var,
                               None, 72))
        torch.library.opcheck(ops.batch_norm_update_stats, (rm.clone(), rv.clone(), None, mean, var, None, 72))
        check_layer_ops(x, w, b, rm, rv)
        torch.library.opcheck(ops.activation, (xr, "leaky_relu", 0.2))
        torch.library.opcheck(ops.activation, (xr, "tanh", 0.0))
        torch.library.opcheck(ops.activation_backward, (torch.randn_like(x), torch.tanh(x), "tanh", 0.0))
        rows = x.flatten(0, 2)
        torch.library.opcheck(ops.bias_act, (rows, torch.randn_like(rows[0]), "leaky_relu", 0.2))
        torch.library.opcheck(ops.bias_act_backward, (torch.randn_like(rows), torch.tanh(rows), "tanh", 0.0))
        flat = x.flatten().clone().requires_grad_()
        for reduction in (0, 1, 2):
            torch.library.opcheck(ops.bce_with_logits, (flat, None, 0.9, reduction))
            torch.library.opcheck(ops.bce_with_logits, (flat, torch.rand_like(flat), 0.0, reduction))


def check_layer_ops(x, w, b, rm, rv):
    """The layer ops and their backward ops, conv and transposed conv, with and without
    BatchNorm's running statistics, every gradient asked for or some."""
    ops, c = torch.ops.fastgan, x.size(1)
    g = torch.Generator().manual_seed(1)
    for transposed in (False, True):
        shape = (c, 4, 3, 3) if transposed else (4, c, 3, 3)
        weight = (torch.randn(shape, generator=g, dtype=x.dtype) * 0.3).to(x.device).requires_grad_()
        conv_args = ((1, 2), (1, 0), (1, 1), transposed, (0, 1) if transposed else (0, 0), 1)
        xr = x.clone().requires_grad_()
        bn_w, bn_b = torch.ones(4, dtype=x.dtype, device=x.device), torch.zeros(4, dtype=x.dtype, device=x.device)
        counter = torch.zeros((), dtype=torch.long, device=x.device)
        for running in (True, False):
            stats = (rm[:4].clone(), rv[:4].clone(), counter) if running else (None, None, None)
            for training in (True, False) if running else (True,):
                torch.library.opcheck(ops.conv_bn_act, (xr, weight, None, *conv_args, bn_w.clone().requires_grad_(),
                                                        bn_b.clone().requires_grad_(), *stats, training, 0.1, 1e-5,
                                                        "leaky_relu", 0.2))
        out, conv_out, mean, var = ops.conv_bn_act(x, weight.detach(), None, *conv_args, bn_w, bn_b, None, None, None,
                                                   True, 0.1, 1e-5, "relu", 0.0)
        for mask in ([True, True, False], [False, True, False], [False, False, False], [True, True, True]):
            torch.library.opcheck(ops.conv_bn_act_backward, (torch.randn_like(out), x, weight.detach(), conv_out, bn_w,
                                                             bn_b, mean, var, *conv_args, True, 1e-5, "relu", 0.0,
                                                             mask))
        bias = torch.randn(4, dtype=x.dtype, device=x.device, requires_grad=True)
        torch.library.opcheck(ops.conv_act, (xr, weight, bias, *conv_args, "tanh", 0.0))
        out = ops.conv_act(x, weight.detach(), bias.detach(), *conv_args, "leaky_relu", 0.2)
        for mask in ([True, True, True], [False, True, False]):
            torch.library.opcheck(ops.conv_act_backward, (torch.randn_like(out), x, weight.detach(), out, *conv_args,
                                                          "leaky_relu", 0.2, mask))


def gan_step(g, d, z, real):
    fake = g(z)
    loss = fastgan.functional.bce_with_logits(d(real), 1.0) + fastgan.functional.bce_with_logits(d(fake), 0.0)
    return loss, fake


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(device, compile_backend):
    if fastgan.backend() != "fused":
        pytest.skip("reference backend")
    torch._dynamo.reset()
    torch.manual_seed(0)
    g, d = Generator(nz=8, ngf=4, image_size=32).to(device), Discriminator(ndf=4, image_size=32).to(device)
    g2, d2 = Generator(nz=8, ngf=4, image_size=32).to(device), Discriminator(ndf=4, image_size=32).to(device)
    g2.load_state_dict(g.state_dict()), d2.load_state_dict(d.state_dict())
    z, real = torch.randn(4, 8, device=device), torch.rand(4, 3, 32, 32, device=device) * 2 - 1
    step = torch.compile(gan_step, fullgraph=True, backend=compile_backend)
    loss_c, fake_c = step(g2, d2, z, real)
    loss_e, fake_e = gan_step(g, d, z, real)
    torch.testing.assert_close(fake_c, fake_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    loss_c.backward(), loss_e.backward()
    for p1, p2 in zip(g2.parameters(), g.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-3, atol=1e-5)
    for b1, b2 in zip(g2.buffers(), g.buffers()):
        torch.testing.assert_close(b1, b2, rtol=1e-4, atol=1e-6)
