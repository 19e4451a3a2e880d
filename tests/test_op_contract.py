"""The op contract: torch.compile with fullgraph=True, kernels registered for every op, and the
compiled tables equal to the Python fallback's copies. (opcheck of every op runs over the op
registry: tests/test_op_registry.py.)"""
import re
from pathlib import Path

import pytest
import torch

import fastgan
from fastgan import _backend
from fastgan.info import op_kernels
from fastgan.models import Discriminator, Generator

pytestmark = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")


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
    from fastgan import _checks, activations, logit_losses

    _C = _backend._C
    # Same names, same order (the error messages list them sorted), same stock modules.
    assert _C.activations() == {name: activations.module_name(name) for name in sorted(activations.ACTIVATIONS)}
    assert _C.logit_losses() == sorted(logit_losses.LOGIT_LOSSES) == list(_checks.LOGIT_LOSSES)
    assert _C.reductions() == _checks.REDUCTIONS


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
