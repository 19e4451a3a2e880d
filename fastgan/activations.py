"""The one table of activations. Its keys are the names the compiled kernels accept
(csrc/activations.h parses the same names), and its functions are the reference path, so
both paths mean the same thing by each name."""
from typing import Callable, NamedTuple, Optional, Type

import torch
import torch.nn.functional as F
from torch import nn


class Activation(NamedTuple):
    """One row of the activation table: the stock-op reference path's forward and derivative."""

    forward: Callable  # (x, slope) -> act(x)
    grad_from_output: Callable  # (y, slope) -> d act / d input, read from the output y
    module: Optional[Type[nn.Module]]  # the stock module it replaces (fuse, layer names)


# The derivative from the output lets backward save only the output; leaky_relu needs
# slope >= 0 for it.
ACTIVATIONS = {
    "identity": Activation(lambda x, slope: x, lambda y, slope: torch.ones_like(y), None),
    "relu": Activation(lambda x, slope: torch.relu(x), lambda y, slope: (y > 0).to(y.dtype), nn.ReLU),
    "leaky_relu": Activation(
        lambda x, slope: F.leaky_relu(x, slope),
        lambda y, slope: torch.where(y > 0, torch.ones_like(y), torch.full_like(y, slope)),
        nn.LeakyReLU,
    ),
    "sigmoid": Activation(lambda x, slope: torch.sigmoid(x), lambda y, slope: y * (1 - y), nn.Sigmoid),
    "tanh": Activation(lambda x, slope: torch.tanh(x), lambda y, slope: 1 - y * y, nn.Tanh),
}
_BY_MODULE = {a.module: name for name, a in ACTIVATIONS.items() if a.module is not None}


def activation_of(module: nn.Module):
    """(name, negative_slope) of a stock activation module fastgan fuses, else None."""
    name = _BY_MODULE.get(type(module))
    return None if name is None else (name, float(getattr(module, "negative_slope", 0.0)))


def module_name(name: str) -> str:
    """The stock module's class name for an activation ("ReLU"; "" for identity)."""
    module = ACTIVATIONS[name].module if name in ACTIVATIONS else None
    return module.__name__ if module is not None else ""


def check_activation(name: str) -> None:
    """Raises ValueError, naming the choices, unless name is in the activation table."""
    if name not in ACTIVATIONS:
        raise ValueError(f"fastgan: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")


def activate(x: torch.Tensor, name: str, negative_slope: float = 0.0) -> torch.Tensor:
    """The activation `name` (a key of ACTIVATIONS, checked by the caller) of x in stock ops;
    negative_slope is leaky_relu's."""
    return ACTIVATIONS[name].forward(x, negative_slope)


def grad_from_output(y: torch.Tensor, name: str, negative_slope: float = 0.0) -> torch.Tensor:
    """d act / d input at each element, read from the activation's output y (leaky_relu needs
    negative_slope >= 0 for that), in stock ops."""
    return ACTIVATIONS[name].grad_from_output(y, negative_slope)
