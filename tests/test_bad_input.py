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
    """Called directly, the ops raise RuntimeError with a message, never crash."""
    if not fastgan._backend.COMPILED:
        pytest.skip("needs fastgan._C")
    ops = torch.ops.fastgan
    with pytest.raises(RuntimeError, match="4-D input"):
        ops.batch_norm_act(torch.randn(3, 4), None, None, None, None, True, 1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="weight must be a 1-D tensor of 4"):
        ops.batch_norm_act(torch.randn(2, 4, 3, 3), torch.ones(5), None, None, None, True, 1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="unknown activation"):
        ops.activation(torch.randn(3), "swish", 0.0)
    with pytest.raises(RuntimeError, match="must be float32"):
        ops.activation(torch.ones(3, dtype=torch.int32), "relu", 0.0)
    with pytest.raises(RuntimeError, match="target size"):
        ops.bce_with_logits(torch.randn(3), torch.randn(4), 0.0, 1)
    with pytest.raises(RuntimeError, match="Expected more than 1 value per channel"):
        ops.batch_norm_act(torch.randn(1, 4, 1, 1), None, None, None, None, True, 1e-5, "relu", 0.0)
