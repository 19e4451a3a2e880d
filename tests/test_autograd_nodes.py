"""The C++ autograd nodes of the fused ops behave as torch's own nodes do: one node per call,
gradients only where they are asked for, saved tensors guarded against in-place changes and
seen by saved-tensor hooks, freed after backward, and forward-mode AD refused by name."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

import fastgan
from fastgan import _backend

pytestmark = pytest.mark.skipif(not _backend.COMPILED, reason="needs fastgan._C")


def layers():
    """(name, stock, fused, input) in fp64 with random parameters."""
    torch.manual_seed(0)
    out = []
    for name, stock in [
        ("convT+bn+relu", nn.Sequential(nn.ConvTranspose2d(3, 4, 3, 2, 1, bias=True), nn.BatchNorm2d(4), nn.ReLU())),
        ("conv+bn+leaky_relu", nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4),
                                             nn.LeakyReLU(0.2))),
        ("conv+tanh", nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=True), nn.Tanh())),
        ("linear+leaky_relu", nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2))),
    ]:
        stock = stock.double()
        with torch.no_grad():
            for p in stock.parameters():
                p.normal_()
        shape = (2, 3) if name.startswith("linear") else (2, 3, 5, 5)
        out.append((name, stock, fastgan.fuse(stock), torch.randn(shape, dtype=torch.float64)))
    return out


LAYERS = [pytest.param(*case, id=case[0]) for case in layers()]


@pytest.mark.parametrize("name,stock,fused,x", LAYERS)
def test_one_named_node_per_layer(name, stock, fused, x):
    out = fused(x.requires_grad_())
    expected = "ConvBnActBackward" if "bn" in name else "LinearActBackward" if "linear" in name else "ConvActBackward"
    assert out.grad_fn.name() == f"fastgan::{expected}"
    # The edges lead straight to the leaves: no node in between.
    leaves = {id(e[0].variable) for e in out.grad_fn.next_functions if e[0] is not None}
    assert leaves == {id(x), *(id(p) for p in fused.parameters())}


@pytest.mark.parametrize("name,stock,fused,x", LAYERS)
def test_grad_of_some_inputs_matches_stock(name, stock, fused, x):
    """autograd.grad for a subset of the inputs: the node computes only those and they match."""
    fused_params, stock_params = list(fused.parameters()), list(stock.parameters())
    n = len(fused_params)
    for wanted in ([1], [0], list(range(2, n + 1)), [0, n]):  # 0 is the input, i > 0 parameter i - 1
        fused_inputs, stock_inputs = [x.detach(), *fused_params], [x.detach(), *stock_params]
        for i, (f, s) in enumerate(zip(fused_inputs, stock_inputs)):
            f.requires_grad_(i in wanted), s.requires_grad_(i in wanted)
        grad_out = torch.randn_like(stock(stock_inputs[0]))
        fused_grads = torch.autograd.grad(fused(fused_inputs[0]), [fused_inputs[i] for i in wanted], grad_out)
        stock_grads = torch.autograd.grad(stock(stock_inputs[0]), [stock_inputs[i] for i in wanted], grad_out)
        for f, s in zip(fused_grads, stock_grads):
            torch.testing.assert_close(f, s, rtol=1e-10, atol=1e-10)
        assert all(p.grad is None for p in fused_params)
    for p in fused_params:
        p.requires_grad_(True)


@pytest.mark.parametrize("name,stock,fused,x", LAYERS)
def test_in_place_change_of_a_saved_input_is_caught(name, stock, fused, x):
    xr = x.clone().requires_grad_()
    y = xr * 1.0
    out = fused(y)
    with torch.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def backward_or_error(model, x, x_needs_grad, changed):
    """The parameter gradients (and the input's) after changing parameter `changed` in place
    between forward and backward, or the error backward raised."""
    for p in model.parameters():
        p.requires_grad_(True)
    xr = x.detach().clone().requires_grad_(x_needs_grad)
    out = model(xr)
    with torch.no_grad():
        dict(model.named_parameters())[changed].add_(0.5)
    try:
        grads = torch.autograd.grad(out, [xr] * x_needs_grad + list(model.parameters()), torch.ones_like(out))
    except RuntimeError as error:
        result = "modified by an inplace operation" if "inplace operation" in str(error) else str(error)
    else:
        result = grads
    with torch.no_grad():
        dict(model.named_parameters())[changed].sub_(0.5)
    return result


@pytest.mark.parametrize("x_needs_grad", [False, True], ids=["x-no-grad", "x-grad"])
@pytest.mark.parametrize("name,stock,fused,x", [case for case in LAYERS if "bn" not in case.id])
def test_saves_what_the_requested_gradients_read_as_stock_does(name, stock, fused, x, x_needs_grad):
    """A parameter changed in place between forward and backward: the fused node raises exactly
    where torch's nodes do (it saved that parameter for a gradient that was asked for), and
    otherwise gives stock's gradients. Linear saves its weight only for the input's gradient; no
    layer saves its bias."""
    for changed in dict(stock.named_parameters()):
        fused_result = backward_or_error(fused, x, x_needs_grad, changed)
        stock_result = backward_or_error(stock, x, x_needs_grad, changed)
        if isinstance(stock_result, str) or isinstance(fused_result, str):
            assert fused_result == stock_result, f"{changed} changed in place"
        else:
            for f, g in zip(fused_result, stock_result):
                torch.testing.assert_close(f, g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_needs_grad", [False, True], ids=["x-no-grad", "x-grad"])
@pytest.mark.parametrize("name,stock,fused,x", [case for case in LAYERS if "bn" in case.id])
def test_conv_bn_act_refuses_a_changed_bias_it_recomputes_from(name, stock, fused, x, x_needs_grad):
    """Where it differs from stock, by design: the BatchNorm layers' backward recomputes the
    activation's input from the convolution's output and both biases instead of keeping the
    output (one tensor less per layer), so a bias changed in place before backward is refused by
    the version check, never used silently; every other parameter behaves as stock."""
    for changed in dict(stock.named_parameters()):
        fused_result = backward_or_error(fused, x, x_needs_grad, changed)
        stock_result = backward_or_error(stock, x, x_needs_grad, changed)
        if changed.endswith("bias"):
            assert fused_result == "modified by an inplace operation", changed
        elif isinstance(stock_result, str) or isinstance(fused_result, str):
            assert fused_result == stock_result, f"{changed} changed in place"
        else:
            for f, g in zip(fused_result, stock_result):
                torch.testing.assert_close(f, g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,stock,fused,x", LAYERS)
def test_saved_tensors_are_freed_and_hooks_see_them(name, stock, fused, x):
    packed = []

    def pack(t):
        packed.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fused(x.requires_grad_())
    assert torch.Size(x.shape) in packed  # the input is among the saved tensors
    out.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.sum().backward()


@pytest.mark.parametrize("name,stock,fused,x", LAYERS)
def test_forward_mode_ad_is_refused_by_name(name, stock, fused, x):
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.randn_like(x))
        with pytest.raises(NotImplementedError, match="forward-mode AD"):
            fused(dual)


def test_bce_and_batch_norm_act_nodes():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    loss = fastgan.functional.bce_with_logits(x, 1.0)
    assert loss.grad_fn.name() == "fastgan::BceWithLogitsBackward"
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, (torch.sigmoid(x) - 1.0).detach() / 6, rtol=1e-12, atol=1e-12)

    y = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def bn_act(y, w, b):
        return fastgan.functional.batch_norm_act(y, None, None, w, b, training=True, activation="leaky_relu",
                                                 negative_slope=0.1)

    assert bn_act(y, w, b).grad_fn.name() == "fastgan::BatchNormActBackward"
    assert torch.autograd.gradcheck(bn_act, (y, w, b))
    act = fastgan.functional.activation(y, "tanh")
    assert act.grad_fn.name() == "fastgan::ActivationBackward"
    assert torch.autograd.gradcheck(lambda t: fastgan.functional.activation(t, "tanh"), (y,))


def test_no_graph_without_grad():
    _, _, fused, x = layers()[0]
    with torch.no_grad():
        assert fused(x.requires_grad_()).grad_fn is None
    for p in fused.parameters():
        p.requires_grad_(False)
    assert fused(x.detach()).grad_fn is None
