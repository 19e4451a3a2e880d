"""Capture a whole training step (G and D forward, backward, optimiser steps) in one CUDA
graph and replay it: one launch per step instead of hundreds.

    step = fastgan.graph.GraphedStep(train_step, real_batch)   # train_step(real) -> losses
    for real in loader:
        loss_d, loss_g = step(real)                              # copies real in, replays

The step function must keep every tensor it touches alive across calls (models and
optimisers do) and its optimisers must be built with capturable=True. Random numbers drawn
inside the step (torch.randn for the latent batch, dropout) are fresh on every replay, as in
eager: PyTorch's CUDA generator advances its offset per replay."""
from typing import Callable, Sequence

import torch


def check_capturable(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Raises ValueError naming the first optimiser not built with capturable=True (its state
    would be updated on the host, outside the graph)."""
    for opt in optimizers:
        for group in opt.param_groups:
            if "capturable" in group and not group["capturable"]:
                raise ValueError(f"fastgan.graph: {type(opt).__name__} must be built with capturable=True to run "
                                 "inside a CUDA graph")


class GraphedStep:
    """A training step captured once in a CUDA graph and replayed on every call.

    Args:
        step_fn: the step, a function of the input tensors returning tensors (the losses, say);
            it runs `warmup` times eagerly (real steps), then once under capture.
        example_inputs: CUDA tensors shaped as every later call's inputs; copies become the
            graph's static inputs.
        optimizers: the step's optimisers, each built with capturable=True.
        warmup: eager steps before capture (lazy initialisation, cuDNN autotuning).

    Calling it with new inputs of the same shapes copies them in, replays the graph and returns
    step_fn's outputs (the same tensors every call: clone to keep one).

    Raises:
        RuntimeError: no CUDA device. ValueError: an input that is not a CUDA tensor, an
            optimiser without capturable=True, a call with another number or shape of inputs."""

    def __init__(self, step_fn: Callable, *example_inputs: torch.Tensor, optimizers=(), warmup: int = 3):
        if not torch.cuda.is_available():
            raise RuntimeError("fastgan.graph: CUDA graphs need a CUDA device; run the step eagerly on CPU")
        for t in example_inputs:
            if not (isinstance(t, torch.Tensor) and t.is_cuda):
                raise ValueError("fastgan.graph: every step input must be a CUDA tensor (it becomes a static buffer)")
        check_capturable(optimizers)
        self.step_fn = step_fn
        self.static_inputs = [t.detach().clone() for t in example_inputs]
        # Warm-up runs on a side stream, as capture requires (lazy state, cuDNN autotuning, ...).
        # They are real training steps, as in eager.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step_fn(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_outputs = step_fn(*self.static_inputs)

    def __call__(self, *inputs: torch.Tensor):
        if len(inputs) != len(self.static_inputs):
            raise ValueError(f"fastgan.graph: expected {len(self.static_inputs)} inputs, got {len(inputs)}")
        for static, new in zip(self.static_inputs, inputs):
            if new.shape != static.shape:
                raise ValueError(f"fastgan.graph: input shape {tuple(new.shape)} differs from the captured "
                                 f"{tuple(static.shape)}; capture a new GraphedStep for another batch size")
            static.copy_(new)
        self.graph.replay()
        return self.static_outputs
