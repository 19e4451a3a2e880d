"""`python -m fastgan info`: what a user with a build problem needs to see first."""
import platform

import torch

from . import _backend

# The device kernels (csrc/cpu, csrc/cuda) and the layer ops composed of them for every
# device (csrc/layers.cpp).
KERNEL_OPS = ("batch_norm_act", "batch_norm_act_backward", "batch_norm_update_stats", "batch_norm_stats",
              "batch_norm_act_backward_reduce", "batch_norm_act_backward_elemt", "activation",
              "activation_backward", "bias_act", "bias_act_backward", "bce_with_logits", "logit_loss")
LAYER_OPS = ("conv_bn_act", "conv_bn_act_backward", "conv_act", "conv_act_backward", "linear_act",
             "linear_act_backward")
OPS = KERNEL_OPS + LAYER_OPS
DISPATCH_KEYS = ("CPU", "CUDA")


def op_kernels():
    """{op: [dispatch keys with a kernel]} for every fastgan op (empty when _C did not load).
    A layer op counts as having a device's kernel when it is composed for every device."""
    if not _backend.COMPILED:
        return {}
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    kernels = {}
    for op in OPS:
        name = f"fastgan::{op}"
        composite = has(name, "CompositeExplicitAutograd")
        kernels[op] = [key for key in DISPATCH_KEYS if composite or has(name, key)]
    return kernels


def report() -> str:
    from . import __version__
    lines = [f"fastgan {__version__}", f"python {platform.python_version()}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
             f"CUDA available: {torch.cuda.is_available()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            lines.append(f"  GPU {i}: {torch.cuda.get_device_name(i)} (sm_{major}{minor})")
    built = _backend.BUILT_WITH
    if built:
        lines.append(f"fastgan._C built against: torch {built['torch']} (CUDA {built.get('cuda') or 'none'}, C++11 ABI "
                     f"{'on' if built.get('cxx11_abi') else 'off'}); CUDA kernels: {built.get('cuda_kernels')}")
    if _backend.COMPILED:
        info = _backend._C.build_info()
        lines.append(f"fastgan._C: loaded from {_backend._C.__file__}")
        lines.append(f"  built against torch {info['torch_version']}; CUDA kernels: {info['cuda']}"
                     + (f" for arch {info['cuda_arch_list']}" if info["cuda"] else ""))
        lines.append(f"  CPU kernels: {_backend._C.cpu_capability()}, "
                     + (f"on up to {torch.get_num_threads()} threads (torch.set_num_threads)" if info["cpu_parallel"]
                        else "on one thread (built without OpenMP)"))
        lines.append("  ops (dispatch keys with kernels):")
        for op, keys in op_kernels().items():
            lines.append(f"    fastgan::{op}: {', '.join(keys) or 'none'}")
    else:
        lines.append(f"fastgan._C: NOT loaded: {_backend.LOAD_ERROR}")
        lines.append(f"  to fix: {_backend.FIX}")
    in_use = ("none: every fastgan op raises until the module is rebuilt (or FASTGAN_BACKEND=reference is set)"
              if _backend.MISMATCH else _backend.backend())
    lines.append(f"backend in use: {in_use}")
    return "\n".join(lines)
