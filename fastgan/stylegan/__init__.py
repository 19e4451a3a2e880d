"""StyleGAN2 / StyleGAN3's custom ops on fastgan's kernels, with NVlabs' signatures and
semantics (torch_utils/ops of stylegan2-ada-pytorch and stylegan3): installed by pip with
fastgan, on the CPU and CUDA, traced by torch.compile, differentiable to any order.

    from fastgan.stylegan import bias_act, upfirdn2d
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    y = bias_act.bias_act(upfirdn2d.upsample2d(x, f), b, act="lrelu", clamp=256)

fastgan.stylegan.rosinality has rosinality/stylegan2-pytorch's `op` API; conv2d_gradfix and
grid_sample_gradfix are NVlabs' convolution and augmentation helpers; patch() points a loaded
NVlabs or rosinality checkout's op entry points at these, unpatch() restores them."""
from . import bias_act, conv2d_gradfix, filtered_lrelu, grid_sample_gradfix, rosinality, upfirdn2d  # noqa: F401
from .patch import patch, unpatch  # noqa: F401

__all__ = ["bias_act", "conv2d_gradfix", "filtered_lrelu", "grid_sample_gradfix", "patch", "rosinality", "unpatch",
           "upfirdn2d"]
