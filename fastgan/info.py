"""`python -m fastgan info`: what a user with a build problem needs to see first."""
import platform

import torch

from . import _backend

DISPATCH_KEYS = ("CPU", "CUDA")


def _has_kernel(op, key):
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{op}", key)


def registered_ops():
    """(device kernel ops, layer ops), as the compiled module registered them (csrc/ops.cpp's
    schemas; empty when _C did not load). A layer op is composed once for every device
    (csrc/layers.cpp: a CompositeExplicitAutograd kernel); the others have their own kernel per
    device (csrc/cpu, csrc/cuda)."""
    if not _backend.COMPILED:
        return (), ()
    names = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastgan::"))
    layer = tuple(op for op in names if _has_kernel(op, "CompositeExplicitAutograd"))
    return tuple(op for op in names if op not in layer), layer


def op_kernels(ops=None):
    """{op: [dispatch keys with a kernel]} for every fastgan op (empty when _C did not load).
    A layer op counts as having a device's kernel when it is composed for every device.
    ops: registered_ops(), when the caller has it already."""
    kernel_ops, layer_ops = registered_ops() if ops is None else ops
    kernels = {op: [key for key in DISPATCH_KEYS if _has_kernel(op, key)] for op in kernel_ops}
    kernels.update({op: list(DISPATCH_KEYS) for op in layer_ops})
    return kernels


def cpu_bf16() -> str:
    """Whether the CPU does bf16 arithmetic natively (AVX512-BF16 or AMX), which is what makes
    bf16 autocast faster than float32 on a CPU; read from Linux's /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"native ({', '.join(native)})" if native else "not native (no avx512_bf16 or amx_bf16)"


def cuda_verdict(info) -> str:
    """What a CUDA tensor gets from this build, in words: fused kernels, or stock ops and why."""
    if not info["cuda"]:
        return ("stock PyTorch ops: this build has no CUDA kernels (it was built against a CPU torch, without "
                "nvcc, or with FASTGAN_NO_CUDA=1); with a CUDA torch and nvcc, `pip install -e .` again")
    archs = info["cuda_arch_list"]
    if not torch.cuda.is_available():
        return f"fused fastgan kernels, built for arch {archs} (no GPU is visible now)"
    built = {a.replace("+PTX", "") for a in archs.split(";")}
    ptx = [a.replace("+PTX", "") for a in archs.split(";") if a.endswith("+PTX")]
    verdicts = []
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        arch = f"{major}.{minor}"
        if arch in built:
            verdicts.append(f"GPU {i}: fused fastgan kernels (sm_{major}{minor} is built)")
        elif any(tuple(map(int, p.split("."))) <= (major, minor) for p in ptx):
            verdicts.append(f"GPU {i}: fused fastgan kernels, compiled from PTX at first use (sm_{major}{minor})")
        else:
            verdicts.append(f"GPU {i}: none for sm_{major}{minor} (built for {archs}); rebuild with "
                            f"TORCH_CUDA_ARCH_LIST={arch}")
    return "; ".join(verdicts)


def report() -> str:
    """What `fastgan info` prints: versions, the devices, the backend in use (and why, when the
    compiled module is missing), and each op's kernels by device. Returns the text."""
    from . import __version__
    lines = [f"fastgan {__version__}", f"python {platform.python_version()}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
             f"CPU bf16: {cpu_bf16()}", f"CUDA available: {torch.cuda.is_available()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            lines.append(f"  GPU {i}: {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
    built = _backend.BUILT_WITH
    if built and not _backend.COMPILED:
        lines.append(f"fastgan._C built against: torch {built['torch']} (CUDA {built.get('cuda') or 'none'}, C++11 ABI "
                     f"{'on' if built.get('cxx11_abi') else 'off'}); CUDA kernels: {built.get('cuda_kernels')}")
    if _backend.COMPILED:
        info = _backend._C.build_info()
        lines.append(f"fastgan._C: loaded from {_backend._C.__file__}")
        lines.append(f"  built against torch {info['torch_version']} (CUDA {built.get('cuda') or 'none'}, C++11 ABI "
                     f"{'on' if built.get('cxx11_abi') else 'off'})")
        threads = (f"on up to {torch.get_num_threads()} threads (torch.set_num_threads)" if info["cpu_parallel"]
                   else "on one thread (built without OpenMP)")
        lines.append(f"  what runs on CPU tensors: fused fastgan kernels ({_backend._C.cpu_capability()}), {threads}")
        lines.append(f"  what runs on CUDA tensors: {cuda_verdict(info)}")
        kernel_ops, layer_ops = registered_ops()
        kernels = op_kernels((kernel_ops, layer_ops))
        lines.append("  device kernels (the devices each op has its own kernel for):")
        for op in kernel_ops:
            lines.append(f"    fastgan::{op}: {', '.join(kernels[op]) or 'none'}")
        lines.append("  layer ops (the conv or matrix product through ATen, then the kernels above; registered for "
                     "every device, but fastgan's modules and functions send a device without the kernels above to "
                     "stock ops, saying so once):")
        lines.append("    " + ", ".join(f"fastgan::{op}" for op in layer_ops))
    else:
        lines.append(f"fastgan._C: NOT loaded: {_backend.LOAD_ERROR}")
        lines.append(f"  to fix: {_backend.FIX}")
    in_use = ("none: every fastgan op raises until the module is rebuilt (or FASTGAN_BACKEND=reference is set)"
              if _backend.MISMATCH else _backend.backend())
    lines.append(f"backend in use: {in_use}")
    return "\n".join(lines)
