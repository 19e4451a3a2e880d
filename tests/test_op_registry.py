"""Every fastgan dispatcher op, called directly (torch.ops.fastgan.*, a public entry point) with
the samples, edges and bad calls of tests/op_registry.py: the results and gradients match the
float64 stock-op reference at every dtype and layout, bad calls raise their documented error,
every tensor argument is checked for its device, and opcheck passes."""
import re
from pathlib import Path

import pytest
import torch

from fastgan import _backend
from op_registry import DTYPES, OPS, _vjp, in_layout

pytestmark = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")

# Per dtype, the error allowed against the float64 reference, relative to the larger of 1 and
# the reference's largest magnitude: a few roundings of the dtype (the inputs are rounded to it
# first, so the reference sees the same values).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(not CUDA, reason="no CUDA device")


def _cases(dtypes=DTYPES, ops=OPS):
    return [pytest.param(name, dtype, layout, id=f"{name}-{str(dtype)[6:]}-{layout}")
            for name in sorted(ops) for dtype in dtypes for layout in ops[name].layouts]


def _device_cases(dtypes=DTYPES, ops=OPS):
    """_cases on the CPU and (where there is one) on the CUDA device."""
    return [pytest.param(*case.values, device, id=f"{device}-{case.id}", marks=() if device == "cpu" else NO_CUDA)
            for device in ("cpu", "cuda") for case in _cases(dtypes, ops)]


def copy_arg(a):
    """A copy of one argument with the same values, dtype and strides (a strided view stays one)."""
    if not isinstance(a, torch.Tensor):
        return list(a) if isinstance(a, list) else a
    if a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last):
        return a.clone(memory_format=torch.preserve_format)
    return in_layout(a.contiguous(), "strided")


def in_float64(a):
    return a.detach().double() if isinstance(a, torch.Tensor) and a.is_floating_point() else copy_arg(a)


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def assert_matches(got, want, dtype, what):
    """got (the op's output at dtype) within TOLERANCE[dtype] of want (float64)."""
    if want is None:
        return
    assert got is not None, f"{what}: the op returned None where the reference has a tensor"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if not want.is_floating_point():
        assert torch.equal(got, want), what
        return
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    tol = TOLERANCE[dtype] * scale
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, equal_nan=True, msg=lambda m: f"{what}: {m}")


def call(op, args):
    return getattr(torch.ops.fastgan, op)(*args)


def test_every_dispatcher_op_has_a_registry_entry():
    from fastgan.info import op_kernels

    csrc = Path(__file__).resolve().parent.parent / "csrc"
    declared = set(re.findall(r'^FASTGAN_OP\(\w+, \w+, (\w+),', (csrc / "op_list.inc").read_text(), re.M))
    assert declared == set(op_kernels()), "op_list.inc and the dispatcher disagree"
    assert declared == set(OPS), (f"ops without a registry entry: {sorted(declared - set(OPS))}; entries of no op: "
                                  f"{sorted(set(OPS) - declared)}")
    layer_ops = set(re.findall(r'^FASTGAN_OP\(layer, \w+, (\w+),', (csrc / "op_list.inc").read_text(), re.M))
    assert {name for name, info in OPS.items() if not info.emulated} == layer_ops


@pytest.mark.parametrize("op,dtype,layout,device", _device_cases())
def test_direct_call_matches_the_reference(op, dtype, layout, device):
    """Outputs, the arguments the op mutates (running statistics, counters), output dtypes,
    and (for ops with an autograd kernel) the gradients of every differentiable argument; the
    float64 reference runs on the same device."""
    info = OPS[op]
    for sample in info.samples(torch.ops.fastgan, dtype, layout, device):
        what = f"{op}({sample.note}) in {dtype}, {layout}, on {device}"
        args = [copy_arg(a) for a in sample.args]
        ref_args = [in_float64(a) for a in (sample.ref_args or sample.args)]
        same_dtype_args = [copy_arg(a) for a in (sample.ref_args or sample.args)]
        got = as_tuple(call(op, args))
        want = as_tuple(info.reference(*ref_args))
        assert len(got) == len(want), what
        expected_dtypes = as_tuple(info.reference(*same_dtype_args))
        for i, (g, w, e) in enumerate(zip(got, want, expected_dtypes)):
            assert_matches(g, w, dtype, f"{what}: output {i}")
            if e is not None:
                assert g.dtype == e.dtype, f"{what}: output {i} has dtype {g.dtype}, the reference's {e.dtype}"
        if sample.ref_args is None:  # the same argument list: what the op mutated, the reference must have too
            for i, (a, r) in enumerate(zip(args, ref_args)):
                if isinstance(a, torch.Tensor):
                    assert_matches(a, r, dtype, f"{what}: argument {i} after the call")
        if info.differentiable and sample.grads and dtype in (torch.float64, torch.float32):
            check_gradients(op, info, sample, dtype, what)


def check_gradients(op, info, sample, dtype, what):
    args = [copy_arg(a) for a in sample.args]
    ref_args = [in_float64(a) for a in sample.args]
    with torch.enable_grad():
        probe = [a.detach().requires_grad_() if i in sample.grads else a for i, a in enumerate(args)]
        out = as_tuple(call(op, probe))[0]
    assert out.requires_grad, f"{what}: the output does not require grad"
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(out.device)
    got = _vjp(lambda *a: as_tuple(call(op, a))[0], args, sample.grads, (cotangent.to(dtype),))
    want = _vjp(lambda *a: as_tuple(info.reference(*a))[0], ref_args, sample.grads, (cotangent,))
    for i, g, w in zip(sample.grads, got, want):
        assert_matches(g, w, dtype, f"{what}: gradient of argument {i}")


def _bad_cases():
    cases = []
    for name in sorted(OPS):
        for bad in OPS[name].bad:
            cases.append(pytest.param("fastgan", name, bad.note, id=f"{name}-{bad.note}"))
            if OPS[name].emulated:
                cases.append(pytest.param("fastgan_emu", name, bad.note, id=f"emulated-{name}-{bad.note}",
                                          marks=pytest.mark.cuda_emu))
    return cases


@pytest.mark.parametrize("library,op,note", _bad_cases())
def test_bad_call_raises_its_documented_error(request, library, op, note):
    """On the CPU kernels and (kernel ops) on the emulated CUDA kernels: the same type, the same words."""
    if library == "fastgan_emu":
        request.getfixturevalue("emu")
    (bad,) = [b for b in OPS[op].bad if b.note == note]
    with pytest.raises(Exception) as raised:
        getattr(getattr(torch.ops, library), op)(*bad.args())
    assert raised.type is bad.error, f"{op}({note}) raised {raised.type.__name__}: {raised.value}"
    assert str(raised.value).splitlines()[0] == bad.message


def redispatch_to_cpu(library, op, args):
    """Calls the op's CPU kernel itself, whatever devices its arguments are on (the dispatcher
    would send a call with a meta tensor to the fake kernel)."""
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    return getattr(library, op).default.redispatch(cpu, *args)


def _device_sample(library, info, device="cpu"):
    """The op's float32 sample with the most tensor arguments."""
    samples = info.samples(library, torch.float32, "contiguous", device)
    return max(samples, key=lambda s: sum(isinstance(a, torch.Tensor) for a in s.args))


def check_devices(library, op, info):
    """Each tensor argument in turn on the meta device, the others on the CPU, through the
    op's CPU kernel."""
    sample = _device_sample(library, info)
    redispatch_to_cpu(library, op, [copy_arg(a) for a in sample.args])  # valid as given
    for i, arg in enumerate(sample.args):
        if not isinstance(arg, torch.Tensor):
            continue
        moved = [copy_arg(a) for a in sample.args]
        moved[i] = arg.to("meta")
        with pytest.raises((RuntimeError, ValueError), match="meta") as raised:
            redispatch_to_cpu(library, op, moved)
        assert "fastgan" in str(raised.value), str(raised.value)


# The kernel ops that take more than one tensor. (An op of one tensor runs on that tensor's
# device; the layer ops are composites whose every step dispatches on its own arguments, so a
# tensor on another device reaches a kernel op's check or ATen's.)
DEVICE_CHECKED = sorted(name for name, info in OPS.items() if _backend.COMPILED and info.emulated and sum(
    isinstance(a, torch.Tensor) for a in _device_sample(torch.ops.fastgan, info).args) > 1)


@pytest.mark.parametrize("op", DEVICE_CHECKED)
def test_every_tensor_argument_is_checked_for_its_device(op):
    """A tensor on another device than the input reaching a kernel hands it a pointer it must
    not read; every tensor argument is refused with its device named. Shown with a meta
    tensor beside CPU ones, calling the CPU kernel directly."""
    check_devices(torch.ops.fastgan, op, OPS[op])


@NO_CUDA
@pytest.mark.parametrize("op", DEVICE_CHECKED)
def test_every_tensor_argument_is_checked_for_its_device_on_cuda(op):
    """On a GPU, as a user would get it wrong: each tensor argument in turn on the CPU, the
    others on the CUDA device, an ordinary call (the dispatcher picks the CUDA kernel)."""
    sample = _device_sample(torch.ops.fastgan, OPS[op], "cuda")
    for i, arg in enumerate(sample.args):
        if not isinstance(arg, torch.Tensor):
            continue
        moved = [copy_arg(a) for a in sample.args]
        moved[i] = arg.cpu()
        with pytest.raises((RuntimeError, ValueError), match="cpu") as raised:
            call(op, moved)
        assert "fastgan" in str(raised.value), str(raised.value)


@pytest.mark.cuda_emu
@pytest.mark.parametrize("op", DEVICE_CHECKED)
def test_every_tensor_argument_is_checked_for_its_device_by_the_cuda_kernels(emu, op):
    """The same on the emulated CUDA kernels (the CUDA ops' own checks)."""
    check_devices(torch.ops.fastgan_emu, op, OPS[op])


@pytest.mark.cuda_emu
@pytest.mark.parametrize("op,dtype,layout", _cases(ops={k: v for k, v in OPS.items() if v.emulated}))
def test_emulated_cuda_kernels_match_the_cpu_ops(emu, op, dtype, layout):
    """Every sample through the CUDA kernels (emulated) and the CPU kernels: the same outputs
    (packed records bit for bit) and the same mutated arguments, within the dtype's tolerance."""
    info = OPS[op]
    for sample in info.samples(torch.ops.fastgan, dtype, layout, "cpu"):
        what = f"{op}({sample.note}) in {dtype}, {layout}"
        cpu_args, cuda_args = [copy_arg(a) for a in sample.args], [copy_arg(a) for a in sample.args]
        cpu = as_tuple(call(op, cpu_args))
        cuda = as_tuple(getattr(torch.ops.fastgan_emu, op)(*cuda_args))
        for i, (c, g) in enumerate(zip(cpu, cuda)):
            assert_matches(g, None if c is None else c.double() if c.is_floating_point() else c, dtype,
                           f"{what}: output {i}")
        for i, (c, g) in enumerate(zip(cpu_args, cuda_args)):
            if isinstance(c, torch.Tensor):
                assert_matches(g, c.double() if c.is_floating_point() else c, dtype, f"{what}: argument {i}")


@pytest.mark.parametrize("op,dtype,layout", _cases(dtypes=(torch.float32,)))
def test_opcheck(op, dtype, layout):
    """torch.library.opcheck: schema, fake kernel (output strides in every layout), autograd
    registration, AOT dispatch. (One dtype: what opcheck checks does not depend on it, and the
    direct-call test covers every dtype.)"""
    info = OPS[op]
    for sample in info.samples(torch.ops.fastgan, dtype, layout, "cpu"):
        args = [copy_arg(a) for a in sample.args]
        if info.differentiable:
            args = [a.requires_grad_() if i in sample.grads else a for i, a in enumerate(args)]
        torch.library.opcheck(getattr(torch.ops.fastgan, op), tuple(args))
