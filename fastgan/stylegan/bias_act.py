"""StyleGAN's bias_act with NVlabs' signature and semantics (torch_utils/ops/bias_act.py):
y = clamp(act(x + b) * gain, -clamp, clamp), in one pass forward and one backward on the
compiled op torch.ops.fastgan.stylegan_bias_act (CPU and CUDA), differentiable to any order;
without it the stock-op reference runs, with the same checks and errors."""
import math
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from .. import _checks
from .._dispatch import run
from .._fake import empty_like_layout, fake
from .upfirdn2d import _check_impl

Tensor = torch.Tensor


class ActivationSpec(NamedTuple):
    func: Callable  # (x, alpha) -> act(x)
    def_alpha: float
    def_gain: float


# NVlabs' table, the same as csrc/stylegan_activations.h (tests/test_stylegan_bias_act.py holds
# the two equal). alpha is lrelu's slope; the others ignore it, as NVlabs' do.
ACTIVATIONS = {
    "linear": ActivationSpec(lambda x, alpha: x, 0.0, 1.0),
    "relu": ActivationSpec(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "elu": ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": ActivationSpec(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def check_bias_act(x, b, dim, act):
    """The op's argument checks, as csrc/args/stylegan_bias_act.h words them."""
    _checks.check_float_tensor(x, "x")
    if act not in ACTIVATIONS:
        raise ValueError(f"fastgan: bias_act: unknown act {act!r}; expected one of {sorted(ACTIVATIONS)}")
    if b is None:
        return dim
    d = dim + x.dim() if dim < 0 else dim
    if not 0 <= d < x.dim():
        raise IndexError(f"fastgan: bias_act: dim {dim} is out of range for x of shape {tuple(x.shape)}")
    check_bias(x, b, d, "bias_act")
    return d


def check_bias(x, b, d, op):
    """b: 1-D, x.shape[d] elements, x's device and dtype (csrc/args/stylegan_bias_act.h's words)."""
    _checks.check_float_tensor(b, "b")
    if b.dim() != 1 or b.shape[0] != x.shape[d]:
        raise ValueError(f"fastgan: {op}: b must be a 1-D tensor of x.shape[{d}] = {x.shape[d]} elements, got "
                         f"shape {tuple(b.shape)}")
    if b.device != x.device:
        raise RuntimeError(f"fastgan: b is on {b.device} but input is on {x.device}")
    if b.dtype != x.dtype:
        raise TypeError(f"fastgan: {op}: b dtype {b.dtype} does not match x dtype {x.dtype}")


def reference(x, b, dim, act, alpha, gain, clamp):
    """The op in stock ops, from its definition: the fallback and the tests' oracle."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.dim())])
    x = ACTIVATIONS[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(x: Tensor, b: Optional[Tensor] = None, dim: int = 1, act: str = "linear", alpha: Optional[float] = None,
             gain: Optional[float] = None, clamp: Optional[float] = None, impl: Optional[str] = None) -> Tensor:
    """Add a bias, activate, scale and clamp, in one pass: clamp(act(x + b) * gain, -clamp, clamp).

    Args:
        x: any shape, float32, float64, float16 or bfloat16 (computed in float32, float64 for
            float64), any memory format (kept).
        b: None, or a 1-D tensor of x.shape[dim] elements, x's dtype and device.
        dim: the dimension b runs along (negative counts from the end).
        act: one of ACTIVATIONS (linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish).
        alpha: lrelu's slope (None: 0.2); the other activations ignore it.
        gain: the scale after the activation (None: the activation's default, sqrt(2) for relu,
            lrelu and swish, else 1).
        clamp: None for no clamp, else the output's bound (>= 0).
        impl: None, 'fastgan' or 'cuda' (NVlabs' name) run fastgan's kernels where they are built for
            x's device, 'ref' the stock-PyTorch reference.
    Returns:
        A tensor of x's shape, dtype and memory format. Differentiable to any order in x and b.
    Raises:
        TypeError: x or b not a floating-point tensor, or b of another dtype than x.
        ValueError: an unknown act or impl, b of the wrong shape.
        IndexError: dim out of range.
        RuntimeError: b on another device than x.
    """
    _check_impl(impl)
    spec = ACTIVATIONS.get(act)
    alpha = float(alpha if alpha is not None else (spec.def_alpha if spec else 0.0))
    gain = float(gain if gain is not None else (spec.def_gain if spec else 1.0))
    clamp = float(clamp if clamp is not None else -1)
    args = (x, b, dim, act, alpha, gain, clamp)
    return fallback(*args) if impl == "ref" else run("stylegan_bias_act", fallback, *args)


def fallback(x, b, dim, act, alpha, gain, clamp):
    """The op's stock-op fallback: its schema's arguments, its checks, its result."""
    return reference(x, b, check_bias_act(x, b, dim, act), act, alpha, gain, clamp)


@fake("stylegan_bias_act")
def _stylegan_bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    return empty_like_layout(x)


@fake("stylegan_bias_act_backward")
def _stylegan_bias_act_backward_fake(grad_out, x, b, dim, act, alpha, gain, clamp):
    return empty_like_layout(x)
