"""The one table of activations. Its keys are the names the compiled kernels accept
(csrc/activations.h parses the same names), and its functions are the reference path, so
both paths mean the same thing by each name."""
import torch
import torch.nn.functional as F

# name -> (forward(x, slope), d act/d input from the output y). The derivative from the
# output lets backward save only the output; leaky_relu needs slope >= 0 for it.
ACTIVATIONS = {
    "identity": (lambda x, slope: x, lambda y, slope: torch.ones_like(y)),
    "relu": (lambda x, slope: torch.relu(x), lambda y, slope: (y > 0).to(y.dtype)),
    "leaky_relu": (
        lambda x, slope: F.leaky_relu(x, slope),
        lambda y, slope: torch.where(y > 0, torch.ones_like(y), torch.full_like(y, slope)),
    ),
    "tanh": (lambda x, slope: torch.tanh(x), lambda y, slope: 1 - y * y),
}


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"fastgan: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")


def activate(x: torch.Tensor, name: str, negative_slope: float = 0.0) -> torch.Tensor:
    return ACTIVATIONS[name][0](x, negative_slope)


def grad_from_output(y: torch.Tensor, name: str, negative_slope: float = 0.0) -> torch.Tensor:
    return ACTIVATIONS[name][1](y, negative_slope)
