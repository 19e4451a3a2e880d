"""fastgan.stylegan's conv2d_gradfix and grid_sample_gradfix: NVlabs' APIs, the stock results,
and the R1 penalty's second-order gradients through them (grid_sample against bilinear sampling
written from its definition with differentiable gathers)."""
import pytest
import torch
import torch.nn.functional as F

from fastgan.stylegan import conv2d_gradfix, grid_sample_gradfix


def test_conv2d_gradfix_is_the_stock_convolution_to_second_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    wt = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def d(conv, convt, x):
        h = F.leaky_relu(conv(x, w, None, 2, 1), 0.2)
        return convt(h, wt, None, 2, 1, 1, 1, 1).square().sum()

    penalties = []
    for conv, convt in ((conv2d_gradfix.conv2d, conv2d_gradfix.conv_transpose2d),
                        (F.conv2d, lambda i, k, b, s, p, op, gr, dil: F.conv_transpose2d(i, k, b, s, p, op, gr, dil))):
        with conv2d_gradfix.no_weight_gradients():
            (r1,) = torch.autograd.grad(d(conv, convt, x), x, create_graph=True)
        penalties.append(torch.autograd.grad(r1.square().sum(), (w, wt)))
    for a, e in zip(*penalties):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_no_weight_gradients_is_a_context_that_restores():
    assert not conv2d_gradfix.weight_gradients_disabled
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled
        with conv2d_gradfix.no_weight_gradients(False):
            assert conv2d_gradfix.weight_gradients_disabled
    assert not conv2d_gradfix.weight_gradients_disabled


def bilinear_definition(x, grid):
    """grid_sample(bilinear, zeros, align_corners=False) from its definition: each output is the
    weighted sum of the 4 input pixels around ((gx + 1) * W - 1) / 2, ((gy + 1) * H - 1) / 2,
    pixels outside the image counting as 0. Gathers and products: differentiable to any order."""
    n, c, h, w = x.shape
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    out = 0
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            weight = (1 - (ix - cx).abs()) * (1 - (iy - cy).abs())
            inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
            idx = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().reshape(n, 1, -1).expand(n, c, -1)
            vals = x.reshape(n, c, -1).gather(2, idx).reshape(n, c, *grid.shape[1:3])
            out = out + vals * (weight * inside)[:, None]
    return out


def make_grid(seed=1):
    g = torch.Generator().manual_seed(seed)
    theta = torch.eye(2, 3, dtype=torch.float64)[None].repeat(2, 1, 1) + 0.2 * torch.randn(2, 2, 3, generator=g,
                                                                                            dtype=torch.float64)
    return F.affine_grid(theta, (2, 3, 7, 9), align_corners=False)


def test_grid_sample_is_the_stock_op_and_the_definition():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    grid = make_grid()
    y = grid_sample_gradfix.grid_sample(x, grid)
    torch.testing.assert_close(y, F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    torch.testing.assert_close(y, bilinear_definition(x, grid))


def test_grid_sample_r1_penalty_through_the_augmentation():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    grid = make_grid()
    results = []
    for sample in (grid_sample_gradfix.grid_sample, bilinear_definition):
        logits = F.softplus(F.conv2d(sample(x, grid), w)).sum()
        (r1,) = torch.autograd.grad(logits, x, create_graph=True)
        results.append(torch.autograd.grad(r1.square().sum(), w))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-10)


def test_grid_sample_gradchecks():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = make_grid()[:1, :3, :4].clone()
    assert torch.autograd.gradcheck(grid_sample_gradfix.grid_sample, (x, grid.requires_grad_()))
    assert torch.autograd.gradgradcheck(lambda t: grid_sample_gradfix.grid_sample(t, grid.detach()), (x,))


def test_grid_sample_second_order_through_grid_is_refused():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = make_grid()[:1].clone().requires_grad_()
    (gx,) = torch.autograd.grad(grid_sample_gradfix.grid_sample(x, grid).square().sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="no second-order gradient through grid"):
        torch.autograd.grad(gx.sum(), grid)
