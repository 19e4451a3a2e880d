"""What the fake kernels share. A fake kernel says an op's output shapes, dtypes and layouts
for torch.compile and opcheck; each op's lives beside the op's Python function (functional.py,
losses.py, sync_batch_norm.py), registered with @fake when the compiled module is there.
Autograd and the argument checks are in C++ (csrc/autograd_*.cpp, csrc/checks.h), so an eager
call never runs a fake kernel."""
import torch
from torch._prims_common import suggest_memory_format

from ._backend import COMPILED
from .reference import stats_dtype

aten = torch.ops.aten


def empty_like_layout(t):
    return torch.empty_like(t, memory_format=_layout(t))


def _layout(t):
    # Mirrors csrc/fastgan.h layout_of(): the kernels write outputs in the input's layout.
    if t.dim() == 4 and suggest_memory_format(t) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format


def stats_like(input):
    stats = input.new_empty((input.size(1),), dtype=stats_dtype(input))
    return stats, torch.empty_like(stats)


def param_grad(like, param):
    return None if param is None else torch.empty_like(like, dtype=param.dtype)  # a tensor of its own


def conv_grads(grad_y, input, weight, out_channels, stride, padding, dilation, transposed, output_padding, groups,
               output_mask):
    if not any(output_mask):
        return None, None, None
    # ATen's own meta kernel says what the real convolution backward returns.
    return aten.convolution_backward(grad_y, input, weight, [out_channels] if output_mask[2] else None, stride,
                                     padding, dilation, transposed, output_padding, groups, output_mask)


def fake(op):
    """Registers the decorated function as torch.ops.fastgan.<op>'s fake kernel (when fastgan._C
    is loaded: without it there is no op to register for)."""
    def register(fn):
        if COMPILED:
            torch.library.register_fake(f"fastgan::{op}")(fn)
        return fn
    return register


def empty_in_layout(like, shape):
    """A new tensor of the given 4-D shape in like's layout (dtype and device too)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=_layout(like))
