"""StyleGAN3's filtered_lrelu with NVlabs' signature and semantics (torch_utils/ops/
filtered_lrelu.py): per channel, add the bias, upsample by `up` with the FIR filter fu, apply a
leaky ReLU with gain and clamp, filter with fd and downsample by `down`. One call of the
compiled op torch.ops.fastgan.filtered_lrelu (CPU and CUDA); its backward keeps 2 bits per
element of the upsampled signal instead of the signal (a sixteenth of it in float32), and is
differentiable again (R1 and path-length penalties). Without the compiled module the stock-op
reference runs, with the same checks and errors."""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from .. import _checks, reference as _reference
from .._dispatch import run
from .._fake import empty_in_layout, fake
from .bias_act import check_bias
from .upfirdn2d import Padding, _check_impl, _padding

Tensor = torch.Tensor


def _identity(x):
    return torch.ones([1, 1], dtype=torch.float32, device=x.device if isinstance(x, Tensor) else "cpu")


def _fir_size(f):
    return (f.shape[-1], f.shape[-1]) if f.dim() == 1 else tuple(f.shape)


def check_filtered_lrelu(x, fu, fd, b, up, down, padding):
    """The op's argument checks, as csrc/args/filtered_lrelu.h words them (the filters'
    requires_grad first, as the C++ autograd kernel refuses it before the op's checks run)."""
    if torch.is_grad_enabled() and any(isinstance(f, Tensor) and f.requires_grad for f in (fu, fd)):
        raise NotImplementedError("fastgan.filtered_lrelu: the filters get no gradient; pass ones that do not require "
                                  "grad (fu.detach(), fd.detach())")
    _checks.check_float_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"fastgan: filtered_lrelu expects a 4-D x (N, C, H, W), got a {x.dim()}-D tensor of shape "
                         f"{tuple(x.shape)}")
    for f, name in ((fu, "fu"), (fd, "fd")):
        _checks.check_float_tensor(f, name)
        if f.dim() not in (1, 2) or f.numel() == 0:
            raise ValueError(f"fastgan: filtered_lrelu expects {name} of shape (taps,) (separable) or (height, width) "
                             f"with at least one tap, got shape {tuple(f.shape)}")
        if f.device != x.device:
            raise RuntimeError(f"fastgan: {name} is on {f.device} but input is on {x.device}")
    if b is not None:
        check_bias(x, b, 1, "filtered_lrelu")
    if up < 1 or down < 1:
        raise ValueError(f"fastgan: filtered_lrelu: up and down must be integers >= 1, got up {up} and down {down}")
    if len(padding) != 4:
        raise ValueError(f"fastgan: filtered_lrelu: padding must be 4 integers [x0, x1, y0, y1], got {list(padding)}")
    (fuh, fuw), (fdh, fdw) = _fir_size(fu), _fir_size(fd)
    if not (_reference.fir_axis_fits(x.shape[3], up, down, padding[0], padding[1], fuw + fdw)
            and _reference.fir_axis_fits(x.shape[2], up, down, padding[2], padding[3], fuh + fdh)):
        raise ValueError(f"fastgan: filtered_lrelu: the upsampled, padded input must stay below 2^30 samples per "
                         f"axis, got x of shape {tuple(x.shape)}, up {up}, padding {list(padding)}")
    mid_w = _reference.fir_out_len(x.shape[3], up, 1, padding[0], padding[1], fuw)
    mid_h = _reference.fir_out_len(x.shape[2], up, 1, padding[2], padding[3], fuh)
    if min(_reference.fir_out_len(mid_w, 1, down, 0, 0, fdw), _reference.fir_out_len(mid_h, 1, down, 0, 0, fdh)) < 1:
        raise ValueError(f"fastgan: filtered_lrelu: x of shape {tuple(x.shape)} with up {up}, down {down}, padding "
                         f"{list(padding)}, fu of shape {tuple(fu.shape)} and fd of shape {tuple(fd.shape)} leaves no "
                         f"output")


def reference(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The op in stock ops, from its published definition: the fallback and the tests' oracle."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    x = _reference.upfirdn2d(x, fu, [up, up], [1, 1], padding, flip_filter, up * up)
    x = F.leaky_relu(x, slope) * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return _reference.upfirdn2d(x, fd, [1, 1], [down, down], [0, 0, 0, 0], flip_filter, 1.0)


def filtered_lrelu(x: Tensor, fu: Optional[Tensor] = None, fd: Optional[Tensor] = None, b: Optional[Tensor] = None,
                   up: int = 1, down: int = 1, padding: Padding = 0, gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None, flip_filter: bool = False, impl: Optional[str] = None) -> Tensor:
    """Bias, upsampling FIR filter, leaky ReLU with gain and clamp, downsampling FIR filter, fused.

    Per image and channel: x + b; upsample by up (insert zeros), pad by padding, convolve with fu
    times up^2 (upfirdn2d); clamp(leaky_relu(., slope) * gain, -clamp, clamp); convolve with fd and
    keep every down-th sample. The output is (N, C, (H * up + py0 + py1 - fuh - fdh + 1) // down + 1,
    likewise for W), in x's memory format.

    Args:
        x: (N, C, H, W), float32, float64, float16 or bfloat16.
        fu, fd: the upsampling and downsampling filters, (taps,) separable or (height, width), any
            float dtype, on x's device; None for the identity.
        b: None or (C,), x's dtype.
        up, down: integer factors >= 1, both axes.
        padding: an int, [x, y] or [x0, x1, y0, y1], with respect to the upsampled image.
        gain, slope: the leaky ReLU's gain and negative slope.
        clamp: None, or the bound of the activation's output.
        flip_filter: False convolves, True correlates.
        impl: None, 'fastgan' or 'cuda' (NVlabs' name) run fastgan's op where it is built for x's
            device, 'ref' the stock-PyTorch reference.
    Returns:
        The filtered batch; differentiable to any order in x and b (the filters get no gradient).
    Raises:
        TypeError: x, fu, fd or b not floating point, b of another dtype than x.
        ValueError: a shape, factor or padding that leaves no output; an unknown impl.
        RuntimeError: a filter or b on another device than x.
        NotImplementedError: fu or fd requires grad.
    """
    _check_impl(impl)
    fu = _identity(x) if fu is None else fu
    fd = _identity(x) if fd is None else fd
    padding = _padding(padding)
    clamp = -1.0 if clamp is None else float(clamp)
    args = (x, fu, fd, b, int(up), int(down), padding, float(gain), float(slope), clamp, bool(flip_filter))
    return fallback(*args) if impl == "ref" else run("filtered_lrelu", fallback, *args)


def fallback(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """The op's stock-op fallback: its schema's arguments, its checks, its result."""
    check_filtered_lrelu(x, fu, fd, b, up, down, padding)
    return reference(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)


def _sign_shape(n, c, h, w):
    return (n, c, h, (w + 3) // 4)


@fake("filtered_lrelu_act")
def _filtered_lrelu_act_fake(z, gain, slope, clamp):
    return torch.empty(z.shape, dtype=z.dtype, device=z.device), z.new_empty(_sign_shape(*z.shape), dtype=torch.uint8)


@fake("filtered_lrelu_act_backward")
def _filtered_lrelu_act_backward_fake(grad_a, sign, gain, slope):
    return torch.empty(grad_a.shape, dtype=grad_a.dtype, device=grad_a.device)


@fake("filtered_lrelu")
def _filtered_lrelu_fake(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    (fuh, fuw), (fdh, fdw) = _fir_size(fu), _fir_size(fd)
    n, c, h, w = x.shape
    mid_h = _reference.fir_out_len(h, up, 1, padding[2], padding[3], fuh)
    mid_w = _reference.fir_out_len(w, up, 1, padding[0], padding[1], fuw)
    out_shape = (n, c, _reference.fir_out_len(mid_h, 1, down, 0, 0, fdh), _reference.fir_out_len(mid_w, 1, down, 0, 0,
                                                                                                    fdw))
    return empty_in_layout(x, out_shape), x.new_empty(_sign_shape(n, c, mid_h, mid_w), dtype=torch.uint8)
