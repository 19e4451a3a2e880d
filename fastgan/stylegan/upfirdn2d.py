"""StyleGAN's FIR filter ops with NVlabs' signatures and semantics (stylegan2-ada-pytorch and
stylegan3, torch_utils/ops/upfirdn2d.py): setup_filter, upfirdn2d, filter2d, upsample2d,
downsample2d. One compiled op, torch.ops.fastgan.upfirdn2d, does the work on every device
fastgan._C serves (CPU and CUDA), differentiable to any order; without it the stock-op
reference (fastgan.reference.upfirdn2d) runs, with the same checks and errors."""
from typing import Optional, Sequence, Union

import torch

from .. import _checks, reference
from .._dispatch import run
from .._fake import empty_in_layout, fake

Tensor = torch.Tensor
Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]

IMPLS = (None, "fastgan", "cuda", "ref")


def _check_impl(impl):
    if impl not in IMPLS:
        raise ValueError(f"fastgan: impl must be one of {list(IMPLS)} (None, 'fastgan' and 'cuda' run fastgan's "
                         f"kernels, 'ref' the stock-PyTorch reference), got {impl!r}")


def _scaling(v: Scaling):
    """An up or down factor as [x, y] (an int means both axes)."""
    return [int(v), int(v)] if isinstance(v, int) else [int(s) for s in v]


def _padding(v: Padding):
    """Padding as [x0, x1, y0, y1]: an int pads every side, [x, y] both sides of each axis."""
    if isinstance(v, int):
        return [v, v, v, v]
    v = [int(p) for p in v]
    return [v[0], v[0], v[1], v[1]] if len(v) == 2 else v


def _filter_size(f: Optional[Tensor]):
    """(width, height) of a filter; a 1-D filter is separable, as wide as it is tall."""
    if f is None:
        return 1, 1
    _checks.check_float_tensor(f, "filter")
    if f.dim() not in (1, 2):
        return 1, 1  # upfirdn2d's own check names the problem
    return f.shape[-1], f.shape[0]


def _run(x: Tensor, f: Tensor, up, down, padding, flip_filter: bool, gain: float, impl) -> Tensor:
    """The op: compiled when fastgan._C serves x's device (and impl allows), else the reference."""
    _check_impl(impl)
    args = (x, f, up, down, padding, flip_filter, float(gain))
    return fallback(*args) if impl == "ref" else run("upfirdn2d", fallback, *args)


def fallback(input, filter, up, down, padding, flip_filter, gain):
    """The op's stock-op fallback: its schema's arguments, its checks, its result."""
    _checks.check_upfirdn2d(input, filter, up, down, padding)
    return reference.upfirdn2d(input, filter, up, down, padding, flip_filter, gain)


@fake("upfirdn2d")
def _upfirdn2d_fake(input, filter, up, down, padding, flip_filter, gain):
    fw = filter.shape[-1]
    fh = fw if filter.dim() == 1 else filter.shape[0]
    n, c, h, w = input.shape
    out_h = reference.fir_out_len(h, up[1], down[1], padding[2], padding[3], fh)
    out_w = reference.fir_out_len(w, up[0], down[0], padding[0], padding[1], fw)
    return empty_in_layout(input, (n, c, out_h, out_w))


def setup_filter(f, device="cpu", normalize: bool = True, flip_filter: bool = False, gain: float = 1,
                 separable: Optional[bool] = None) -> Tensor:
    """A FIR filter as upfirdn2d takes it, float32.

    Args:
        f: the taps: None (the identity, [1]), a number, a 1-D or 2-D sequence or tensor.
        device: where the result lives.
        normalize: divide by the sum of the taps, so the filter keeps a constant signal's level.
        flip_filter: flip it on every axis.
        gain: overall gain (a separable filter carries its square root, applied once per axis).
        separable: keep a 1-D filter 1-D (applied along each axis in turn); None: separable when it
            has 8 taps or more, else expanded to its 2-D outer product.
    Returns:
        A float32 tensor of shape (taps,) (separable) or (height, width).
    Raises:
        ValueError: no taps, more than 2 dimensions, or separable=True with a 2-D filter.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.dim() > 2 or f.numel() == 0:
        raise ValueError(f"fastgan: setup_filter expects a number, or a 1-D or 2-D filter with at least one tap, "
                         f"got shape {tuple(f.shape)}")
    if f.dim() == 0:
        f = f[None]
    if separable is None:
        separable = f.dim() == 1 and f.numel() >= 8
    if f.dim() == 1 and not separable:
        f = torch.outer(f, f)
    if f.dim() != (1 if separable else 2):
        raise ValueError(f"fastgan: setup_filter: a 2-D filter cannot be separable, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.dim())))
    f = f * (gain ** (f.dim() / 2))
    return f.to(device=device)


def upfirdn2d(x: Tensor, f: Optional[Tensor], up: Scaling = 1, down: Scaling = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images, in one pass.

    Per image and channel: insert up - 1 zeros after each sample, pad with zeros (negative
    padding crops), convolve with f (correlate if flip_filter), multiply by gain, keep every
    down-th sample. The output is (N, C, (H * up_y + py0 + py1 - fh) // down_y + 1, (W * up_x +
    px0 + px1 - fw) // down_x + 1), in x's memory format. Differentiable to any order in x (the
    gradient is upfirdn2d again); f gets no gradient.

    Args:
        x: (N, C, H, W), float32, float64, float16 or bfloat16, NCHW or channels_last.
        f: the filter, (taps,) separable or (height, width), any float dtype (the kernels sum in
            float32, float64 for float64 x), on x's device; None for the identity.
        up, down: an int, or [x, y].
        padding: an int, [x, y] or [x0, x1, y0, y1], with respect to the upsampled image.
        flip_filter: False convolves (the filter is flipped), True correlates.
        gain: scales the result.
        impl: None, 'fastgan' or 'cuda' (NVlabs' name) run fastgan's kernels where they are built for
            x's device, 'ref' the stock-PyTorch reference.
    Returns:
        The filtered batch.
    Raises:
        TypeError: x or f is not a floating-point tensor.
        ValueError: x not 4-D, f not 1-D or 2-D, a factor below 1, padding that leaves no output.
        RuntimeError: f on another device than x.
        NotImplementedError: f requires grad (the filter is fixed).
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device if isinstance(x, Tensor) else "cpu")
    return _run(x, f, _scaling(up), _scaling(down), _padding(padding), bool(flip_filter), gain, impl)


def filter2d(x: Tensor, f: Optional[Tensor], padding: Padding = 0, flip_filter: bool = False, gain: float = 1,
             impl: Optional[str] = None) -> Tensor:
    """Filter a batch with f, keeping its size when padding is 0 (the filter's centre lands
    on each sample). Arguments, return and errors as upfirdn2d."""
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: Tensor, f: Optional[Tensor], up: Scaling = 2, padding: Padding = 0, flip_filter: bool = False,
               gain: float = 1, impl: Optional[str] = None) -> Tensor:
    """Upsample a batch by up with f as the interpolation filter: (H * up_y, W * up_x) when
    padding is 0, the gain scaled by up_x * up_y so that the level is kept. Arguments, return
    and errors as upfirdn2d."""
    up_x, up_y = _scaling(up)
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw + up_x - 1) // 2, px1 + (fw - up_x) // 2, py0 + (fh + up_y - 1) // 2, py1 + (fh - up_y) // 2]
    return upfirdn2d(x, f, up=[up_x, up_y], padding=p, flip_filter=flip_filter, gain=gain * up_x * up_y, impl=impl)


def downsample2d(x: Tensor, f: Optional[Tensor], down: Scaling = 2, padding: Padding = 0, flip_filter: bool = False,
                 gain: float = 1, impl: Optional[str] = None) -> Tensor:
    """Downsample a batch by down with f as the anti-aliasing filter: (H // down_y, W //
    down_x) when padding is 0 and the size divides. Arguments, return and errors as upfirdn2d."""
    down_x, down_y = _scaling(down)
    px0, px1, py0, py1 = _padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw - down_x + 1) // 2, px1 + (fw - down_x) // 2, py0 + (fh - down_y + 1) // 2,
         py1 + (fh - down_y) // 2]
    return upfirdn2d(x, f, down=[down_x, down_y], padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
