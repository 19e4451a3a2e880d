"""Bad input raises a Python exception that names the problem; it never crashes. Through the
layers and functions here; each op called directly, with its exact errors, runs over the op
registry (tests/test_op_registry.py)."""
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
    "NaN slope": lambda: _conv_t(torch.randn(2, 4, 4, 4), torch.randn(4, 3, 4, 4), activation="leaky_relu",
                                 negative_slope=float("nan")),
    "activation NaN slope": lambda: FF.activation(torch.randn(3), "leaky_relu", float("nan")),
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


# A tensor on another device than the input: RuntimeError, as torch's own ops raise, on the
# reference path (its Python checks; meta tensors stand in for a second device) with the words
# of the C++ checks, which the op registry's device tests reach on the compiled path.
META_INPUTS = {
    "conv weight": (lambda: FF.conv_act(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3, device="meta"), None,
                                        (1, 1), (1, 1), (1, 1), False, (0, 0), 1, "relu", 0.0),
                    "fastgan: Conv2d+ReLU: input is on cpu but weight is on meta"),
    "BatchNorm weight": (lambda: FF.batch_norm_act(torch.randn(2, 4, 3, 3), None, None, torch.ones(4, device="meta"),
                                                   None, True),
                         "fastgan: BatchNorm2d+ReLU: BatchNorm weight is on meta but input is on cpu"),
    "linear bias": (lambda: FF.linear_act(torch.randn(2, 6), torch.randn(7, 6), torch.zeros(7, device="meta"),
                                          "relu"),
                    "fastgan: Linear+ReLU: bias is on meta but weight is on cpu"),
    "bce target": (lambda: FF.bce_with_logits(torch.randn(4), torch.rand(4, device="meta")),
                   "fastgan: target is on meta but input is on cpu"),
}


@pytest.mark.parametrize("case", sorted(META_INPUTS))
def test_a_tensor_on_another_device_raises_runtime_error(case):
    call, message = META_INPUTS[case]
    with fastgan.use_backend("reference"), pytest.raises(RuntimeError) as raised:
        call()
    assert str(raised.value) == message
