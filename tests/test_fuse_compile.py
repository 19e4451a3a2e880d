"""torch.compile(fullgraph=True) of every model style fuse() is tested on (Sequential blocks,
forward-written blocks, spectral norm new and old style, CycleGAN's ResNet generator and
PatchGAN discriminator with InstanceNorm, the pix2pix U-Net, the Linear/BatchNorm1d generator):
no graph break, and the compiled model's training-mode output equals its stock twin's in float64,
running statistics included."""
import pytest
import torch
from torch import nn

from helpers import assert_close, randomised_copy_and_fused
from test_fuse_parametrized import old_style_sn_discriminator, sn_discriminator
from test_fuse_traced import ForwardWrittenD, pix2pix_unet
from test_instance_norm import cyclegan_generator, patchgan_discriminator
from test_modules import vanilla_generator

MODELS = {
    "sn-discriminator": (sn_discriminator, (4, 3, 8, 8)),
    "old-style-sn": (old_style_sn_discriminator, (4, 3, 8, 8)),
    "forward-written-d": (ForwardWrittenD, (4, 3, 16, 16)),
    "cyclegan-generator": (lambda: cyclegan_generator(affine=True, tracked=True), (2, 3, 16, 16)),
    "patchgan": (lambda: patchgan_discriminator(), (2, 3, 16, 16)),
    "pix2pix-unet-batch": (lambda: pix2pix_unet(nn.BatchNorm2d), (2, 3, 8, 8)),
    "pix2pix-unet-instance": (lambda: pix2pix_unet(nn.InstanceNorm2d), (2, 3, 8, 8)),
    "linear-batchnorm1d": (lambda: vanilla_generator(0.1), (4, 8)),
}


@pytest.mark.parametrize("name", MODELS)
def test_fused_model_compiles_without_graph_break(backend, name):
    make, shape = MODELS[name]
    torch.manual_seed(18)
    stock, fused = randomised_copy_and_fused(make)
    x = torch.randn(shape, dtype=torch.float64)
    torch._dynamo.reset()
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x), stock(x), torch.float64, msg="output")
    for (key, b), c in zip(stock.named_buffers(), fused.buffers()):
        assert_close(c, b, torch.float64, msg=key)
