"""Bad input raises a Python exception that names the problem; it never crashes."""
import pytest
import torch

import fastgan
import fastgan.functional as FF
from fastgan.models import Generator


def layer(device):
    return fastgan.nn.Conv2dBNLeakyReLU(3, 4, 3, 1, 1).to(device)


def test_wrong_rank(backend, device):
    with pytest.raises(ValueError, match="4-D input"):
        layer(device)(torch.randn(3, 8, 8, device=device))


def test_channel_mismatch(backend, device):
    with pytest.raises(ValueError, match="expects input with 3 channels"):
        layer(device)(torch.randn(2, 5, 8, 8, device=device))


def test_dtype_mismatch(backend, device):
    with pytest.raises(TypeError, match="input dtype torch.float64 does not match weight dtype torch.float32"):
        layer(device)(torch.randn(2, 3, 8, 8, device=device, dtype=torch.float64))


def test_integer_tensor(backend, device):
    with pytest.raises(TypeError, match="floating-point"):
        layer(device)(torch.ones(2, 3, 8, 8, device=device, dtype=torch.int64))
    with pytest.raises(TypeError, match="floating-point"):
        FF.bce_with_logits(torch.ones(4, dtype=torch.int32, device=device), 1.0)


def test_spatial_size_smaller_than_kernel(backend, device):
    conv = fastgan.nn.Conv2dLeakyReLU(3, 4, 5).to(device)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(torch.randn(2, 3, 3, 3, device=device))


def test_target_shape_mismatch(backend, device):
    with pytest.raises(ValueError, match="Target size"):
        FF.bce_with_logits(torch.randn(4, device=device), torch.rand(5, device=device))


def test_bad_reduction_and_target_type(backend):
    with pytest.raises(ValueError, match="reduction"):
        FF.bce_with_logits(torch.randn(4), 1.0, "average")
    with pytest.raises(TypeError, match="target"):
        FF.bce_with_logits(torch.randn(4), "1")


def test_wrong_latent_size(backend, device):
    with pytest.raises(ValueError, match="latent vectors of shape"):
        Generator(nz=8, ngf=4).to(device)(torch.randn(2, 9, device=device))


def test_bad_activation_and_slope(backend):
    with pytest.raises(ValueError, match="unknown activation"):
        FF.activation(torch.randn(2, 3), "gelu")
    with pytest.raises(ValueError, match="negative_slope"):
        FF.conv2d_leaky_relu(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), negative_slope=-0.1)


def test_bn_parameter_shape(backend):
    with pytest.raises(ValueError, match="BatchNorm weight has shape"):
        FF.batch_norm_act(torch.randn(2, 3, 4, 4), None, None, torch.ones(4), None, True)


def test_compiled_ops_check_their_own_arguments():
    """Called directly, the ops raise an exception with a message, never crash."""
    if not fastgan._backend.COMPILED:
        pytest.skip("needs fastgan._C")
    ops = torch.ops.fastgan
    bn = (None, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0)
    with pytest.raises(ValueError, match="4-D input"):
        ops.batch_norm_act(torch.randn(3, 4), *bn)
    with pytest.raises(ValueError, match=r"BatchNorm weight has shape \(5,\) but the input has 4 channels"):
        ops.batch_norm_act(torch.randn(2, 4, 3, 3), torch.ones(5), *bn[1:])
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation(torch.randn(3), "swish", 0.0)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        ops.activation(torch.ones(3, dtype=torch.int32), "relu", 0.0)
    with pytest.raises(ValueError, match="Target size"):
        ops.bce_with_logits(torch.randn(3), torch.randn(4), 0.0, 1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        ops.batch_norm_act(torch.randn(1, 4, 1, 1), *bn)
    with pytest.raises(ValueError, match="num_batches_tracked must be a one-element torch.int64 tensor"):
        ops.batch_norm_act(torch.randn(2, 4, 3, 3), None, None, torch.zeros(4), torch.ones(4),
                           torch.zeros(2, dtype=torch.long), True, None, 1e-5, "relu", 0.0)
    x = torch.randn(2, 4, 3, 3)
    with pytest.raises(RuntimeError, match="grad_out has shape"):
        ops.batch_norm_act_backward(torch.randn(2, 4, 3, 2), x, None, None, torch.zeros(4), torch.ones(4), True,
                                    1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="grad_out has shape"):
        ops.activation_backward(torch.randn(3), torch.randn(4), "tanh", 0.0)
    with pytest.raises(RuntimeError, match="save_mean must be a 1-D tensor of 4"):
        ops.batch_norm_act_backward(x, x, None, None, torch.zeros(5), torch.ones(4), True, 1e-5, "relu", 0.0)


# Bad input for every fused entry point: (description, call). Each must raise the same
# exception type with the same message on the fused path (C++ checks) as on the reference
# path (fastgan/_checks.py).
def _conv_bn(x, w, **kw):
    bn = torch.nn.BatchNorm2d(w.size(0))
    args = dict(bn_weight=bn.weight, bn_bias=bn.bias, running_mean=bn.running_mean, running_var=bn.running_var,
                num_batches_tracked=bn.num_batches_tracked, training=True, momentum=0.1, eps=1e-5,
                activation="leaky_relu", negative_slope=0.2)
    args.update(kw)
    return FF.conv_bn_act(x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, **args)


def _conv_t(x, w, **kw):
    return FF.conv_act(x, w, None, (2, 2), (1, 1), (1, 1), True, (0, 0), 1, kw.pop("activation", "tanh"),
                       kw.pop("negative_slope", 0.0))


W = torch.randn(4, 3, 3, 3)
BAD_INPUTS = {
    "rank": lambda: _conv_bn(torch.randn(3, 8, 8), W),
    "channels": lambda: _conv_bn(torch.randn(2, 5, 8, 8), W),
    "dtype mismatch": lambda: _conv_bn(torch.randn(2, 3, 8, 8, dtype=torch.float64), W),
    "integer input": lambda: _conv_bn(torch.ones(2, 3, 8, 8, dtype=torch.int64), W),
    "integer weight": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W.long()),
    "weight rank": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W[0]),
    "kernel extent": lambda: FF.conv_act(torch.randn(2, 3, 2, 2), torch.randn(4, 3, 5, 5), None, (1, 1), (0, 0),
                                         (1, 1), False, (0, 0), 1, "leaky_relu", 0.2),
    "kernel extent, dilated": lambda: FF.conv_act(torch.randn(2, 3, 6, 9), torch.randn(4, 3, 3, 3), None, (1, 1),
                                                  (0, 1), (3, 2), False, (0, 0), 1, "relu", 0.0),
    "bn weight shape": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, bn_weight=torch.ones(5)),
    "running_var shape": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, running_var=torch.ones(4, 1)),
    "running_mean without running_var": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, running_var=None),
    "integer bn bias": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, bn_bias=torch.zeros(4, dtype=torch.long)),
    "counter": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, num_batches_tracked=torch.zeros(2)),
    "one value per channel": lambda: _conv_bn(torch.randn(1, 3, 1, 1), W),
    "unknown activation": lambda: _conv_bn(torch.randn(2, 3, 8, 8), W, activation="gelu"),
    "negative slope": lambda: _conv_t(torch.randn(2, 4, 4, 4), torch.randn(4, 3, 4, 4), activation="leaky_relu",
                                      negative_slope=-1.0),
    "transposed channels": lambda: _conv_t(torch.randn(2, 3, 4, 4), torch.randn(4, 3, 4, 4)),
    "bn_act rank": lambda: FF.batch_norm_act(torch.randn(2, 3), None, None),
    "bn_act weight": lambda: FF.batch_norm_act(torch.randn(2, 3, 4, 4), None, None, torch.ones(4), None, True),
    "bce target size": lambda: FF.bce_with_logits(torch.randn(4), torch.rand(5)),
    "bce integer input": lambda: FF.bce_with_logits(torch.ones(4, dtype=torch.int32), 1.0),
    "bce integer target": lambda: FF.bce_with_logits(torch.randn(4), torch.ones(4, dtype=torch.long)),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_fused_and_reference_reject_bad_input_with_the_same_words(case):
    if not fastgan._backend.COMPILED:
        pytest.skip("needs fastgan._C")
    raised = {}
    for name in ("fused", "reference"):
        with fastgan.use_backend(name), pytest.raises((ValueError, TypeError)) as info:
            BAD_INPUTS[case]()
        raised[name] = (info.type, str(info.value))
    assert raised["fused"] == raised["reference"]


@pytest.mark.skipif(not fastgan._backend.COMPILED, reason="needs fastgan._C")
@pytest.mark.parametrize("call", [
    lambda x: torch.ops.fastgan.activation(x, "relu", 0.0),
    lambda x: torch.ops.fastgan.bias_act(x, torch.zeros(8), "relu", 0.0),
    lambda x: torch.ops.fastgan.batch_norm_act(x, None, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0),
    lambda x: torch.ops.fastgan.logit_loss(x, 1.0, "bce", 1),
    lambda x: torch.ops.fastgan.bce_with_logits(x, None, 1.0, 1),
], ids=["activation", "bias_act", "batch_norm_act", "logit_loss", "bce_with_logits"])
def test_every_op_refuses_an_integer_input_with_one_wording(call):
    with pytest.raises(TypeError) as raised:
        call(torch.ones(2, 8, 4, 4, dtype=torch.int64))
    assert str(raised.value).splitlines()[0] == ("fastgan: input must be a floating-point tensor (float32, float64, "
                                                 "float16 or bfloat16), got torch.int64")


# The ops whose backward reads the activation's gradient from its output: called directly
# (torch.ops.fastgan.*, a public entry point) with leaky_relu and a negative slope, the forward
# is right but the gradient is silently wrong (the output's sign is not the input's), so each op
# refuses the slope itself, as fastgan.functional does.
FROM_OUTPUT_OPS = {
    "activation": lambda ops, x, slope: ops.activation(x, "leaky_relu", slope),
    "activation_backward": lambda ops, x, slope: ops.activation_backward(x, x, "leaky_relu", slope),
    "bias_act": lambda ops, x, slope: ops.bias_act(x, torch.zeros(x.size(-1), dtype=x.dtype), "leaky_relu", slope),
    "bias_act_backward": lambda ops, x, slope: ops.bias_act_backward(x, x, "leaky_relu", slope),
}


def _op_libraries():
    libraries = []
    if fastgan._backend.COMPILED:
        libraries.append(("cpu kernels", lambda: torch.ops.fastgan))
    libraries.append(pytest.param(("emulated CUDA kernels", None), marks=pytest.mark.cuda_emu))
    return libraries


@pytest.fixture(params=_op_libraries(), ids=lambda p: p[0])
def op_library(request):
    name, get = request.param
    if get is None:  # the emulated CUDA kernels (tests/emu.py), built on first use
        request.getfixturevalue("emu")
        return torch.ops.fastgan_emu
    return get()


@pytest.mark.parametrize("op", sorted(FROM_OUTPUT_OPS))
@pytest.mark.parametrize("slope", [-0.2, float("nan")], ids=["negative", "nan"])
def test_ops_refuse_a_slope_their_backward_cannot_honour(op_library, op, slope):
    x = torch.randn(4, 8, dtype=torch.float64)
    with pytest.raises(ValueError) as raised:
        FROM_OUTPUT_OPS[op](op_library, x, slope)
    assert str(raised.value).splitlines()[0] == (
        f"fastgan: {op}: negative_slope must be >= 0 (the backward reads the sign from the output), got {slope!r}")


@pytest.mark.skipif(not fastgan._backend.COMPILED, reason="needs fastgan._C")
@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, 3.0])
def test_direct_activation_call_gradient_matches_stock(slope):
    """torch.ops.fastgan.activation through autograd, in float64: the gradient is stock
    leaky_relu's at every slope it accepts (it was 1.0 where stock's is -0.2 at slope -0.2)."""
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    (fused,) = torch.autograd.grad(torch.ops.fastgan.activation(x, "leaky_relu", slope).sum(), x)
    (stock,) = torch.autograd.grad(torch.nn.functional.leaky_relu(x, slope).sum(), x)
    torch.testing.assert_close(fused, stock, rtol=0, atol=0)
