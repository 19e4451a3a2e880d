"""NVlabs' grid_sample_gradfix API (torch_utils/ops/grid_sample_gradfix.py): bilinear
grid_sample with zero padding and align_corners=False whose backward is differentiable again
with respect to the output's gradient, which ADA's augmentation needs under an R1 penalty (the
penalty's gradient flows back through the augmentation). Stock grid_sample's backward has no
derivative; NVlabs' version reached for a private op whose signature changed with torch
releases. This one calls torch.ops.aten.grid_sampler_2d_backward with the schema every torch
from 2.5 has."""
import torch
import torch.nn.functional as F

enabled = True  # NVlabs' switch; kept for code that sets it

_BILINEAR, _ZEROS, _ALIGN_CORNERS = 0, 0, False


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False),
    with a backward that can be differentiated again with respect to the output's gradient.

    Args:
        input: (N, C, H, W). grid: (N, H_out, W_out, 2), coordinates in [-1, 1].
    Returns:
        (N, C, H_out, W_out).
    Raises:
        NotImplementedError: a second-order gradient with respect to grid (NVlabs' has none either).
    """
    return _GridSample2dForward.apply(input, grid)


class _GridSample2dForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=_ALIGN_CORNERS)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        grad_input, grad_grid = _GridSample2dBackward.apply(grad_output, input, grid)
        return grad_input, grad_grid


class _GridSample2dBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid):
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not zeros
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(grad_output, input, grid, _BILINEAR, _ZEROS,
                                                                        _ALIGN_CORNERS, [True, True])
        ctx.save_for_backward(grid)
        return grad_input, grad_grid

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        (grid,) = ctx.saved_tensors
        # grad_input = S^T grad_output, S the sampling (linear in input): it depends on grad_output
        # and grid only. grad_grid depends on all three, and grid on everything: those second
        # derivatives are not written here.
        if (grad2_grad_grid is not None and any(ctx.needs_input_grad)) or (
                ctx.needs_input_grad[2] and grad2_grad_input is not None):
            raise NotImplementedError("fastgan.stylegan.grid_sample_gradfix: no second-order gradient through grid or "
                                      "through grid's gradient (NVlabs' grid_sample_gradfix has none either)")
        grad2_grad_output = None
        if ctx.needs_input_grad[0] and grad2_grad_input is not None:
            grad2_grad_output = _GridSample2dForward.apply(grad2_grad_input, grid)  # S (S^T)^T
        return grad2_grad_output, None, None
