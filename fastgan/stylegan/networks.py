"""A compact StyleGAN2 (Karras et al. 2020, config F's architecture at any resolution) on
fastgan.stylegan's ops: a mapping network; a synthesis network of modulated, demodulated
convolutions with per-pixel noise, a clamped bias + leaky ReLU, upsampling by a transposed
convolution and a [1, 3, 3, 1] FIR filter, and skip toRGB outputs; a residual discriminator with
FIR downsampling and minibatch standard deviation. Every model takes impl: None runs fastgan's
ops, "ref" the same model on the stock-op reference path (how NVlabs' code runs when its
plugins fail to build), so the two can be compared and timed on the same weights.

Exported as fastgan.models.StyleGAN2Generator and StyleGAN2Discriminator."""
import math
from typing import Optional

import torch
from torch import nn

from . import conv2d_gradfix
from .bias_act import bias_act
from .upfirdn2d import downsample2d, filter2d, setup_filter, upsample2d

Tensor = torch.Tensor
SQRT2 = math.sqrt(2)


def _channels(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


class FullyConnected(nn.Module):
    """A linear layer with an equalised learning rate (weights N(0, 1) / lr, scaled at run time)
    and bias_act's activation."""

    def __init__(self, in_features: int, out_features: int, act: str = "linear", lr_multiplier: float = 1.0,
                 bias_init: float = 0.0, impl: Optional[str] = None):
        super().__init__()
        self.act, self.impl = act, impl
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain, self.bias_gain = lr_multiplier / math.sqrt(in_features), lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = (self.bias * self.bias_gain).to(x.dtype)
        return bias_act(x.matmul(w.t()), b, act=self.act, impl=self.impl)


class MappingNetwork(nn.Module):
    """z -> w: z normalised to unit second moment, then `layers` leaky-ReLU layers at lr 0.01."""

    def __init__(self, z_dim: int, w_dim: int, layers: int = 8, impl: Optional[str] = None):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(FullyConnected(i, o, "lrelu", 0.01, impl=impl) for i, o in zip(dims, dims[1:]))

    def forward(self, z: Tensor) -> Tensor:
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.layers:
            x = layer(x)
        return x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool, up: int, f: Tensor,
                     impl: Optional[str]) -> Tensor:
    """Each image's convolution with the weight scaled by its styles (per input channel) and,
    if demodulate, normalised per output channel; as one grouped convolution over the batch.
    up=2: a stride-2 transposed convolution then the FIR filter (gain 4)."""
    n, (o, i, kh, kw) = x.shape[0], weight.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    x = x.reshape(1, n * i, *x.shape[2:])
    if up == 1:
        x = conv2d_gradfix.conv2d(x, w.reshape(n * o, i, kh, kw).to(x.dtype), padding=kh // 2, groups=n)
    else:  # (2H + 1) after the transposed convolution; the 4-tap filter, padded 1 on each side, leaves 2H
        w = w.transpose(1, 2).reshape(n * i, o, kh, kw).to(x.dtype)
        x = conv2d_gradfix.conv_transpose2d(x, w, stride=2, groups=n)
        x = filter2d(x, f, padding=[-(kw // 2), -(kw // 2) + 1, -(kh // 2), -(kh // 2) + 1], gain=4, impl=impl)
    return x.reshape(n, o, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """A modulated 3x3 convolution (optionally upsampling), noise, bias and clamped leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 clamp: Optional[float] = 256, impl: Optional[str] = None):
        super().__init__()
        self.up, self.resolution, self.clamp, self.impl = up, resolution, clamp, impl
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1, impl=impl)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight / math.sqrt(self.weight[0].numel()), styles, True, self.up,
                             self.resample_filter, self.impl)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.clamp, impl=self.impl)


class ToRGB(nn.Module):
    """A modulated 1x1 convolution without demodulation, and a bias."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, clamp: Optional[float] = 256,
                 impl: Optional[str] = None):
        super().__init__()
        self.clamp, self.impl = clamp, impl
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1, impl=impl)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) / math.sqrt(self.weight[0].numel())
        x = modulated_conv2d(x, self.weight, styles, False, 1, None, self.impl)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.clamp, impl=self.impl)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2's generator (skip architecture): z (N, z_dim) -> images (N, img_channels, R, R).

    Args:
        z_dim, w_dim: latent and intermediate latent sizes.
        img_resolution: a power of two >= 4. img_channels: 3 for RGB.
        channel_base, channel_max: channels at resolution r are min(channel_base // r, channel_max).
        mapping_layers: the mapping network's depth.
        impl: None for fastgan's ops, "ref" for the stock-op reference path.
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 64, img_channels: int = 3,
                 channel_base: int = 16384, channel_max: int = 512, mapping_layers: int = 8,
                 impl: Optional[str] = None):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"fastgan: StyleGAN2Generator: img_resolution must be a power of two >= 4, got "
                             f"{img_resolution}")
        self.impl = impl
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, impl)
        c4 = _channels(4, channel_base, channel_max)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers, self.torgb = nn.ModuleList([SynthesisLayer(c4, c4, w_dim, 4, impl=impl)]), nn.ModuleList()
        self.torgb.append(ToRGB(c4, img_channels, w_dim, impl=impl))
        res = 4
        while res < img_resolution:
            cin, res = _channels(res, channel_base, channel_max), res * 2
            cout = _channels(res, channel_base, channel_max)
            self.layers.append(SynthesisLayer(cin, cout, w_dim, res, up=2, impl=impl))
            self.layers.append(SynthesisLayer(cout, cout, w_dim, res, impl=impl))
            self.torgb.append(ToRGB(cout, img_channels, w_dim, impl=impl))
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, z: Tensor, noise_mode: str = "random") -> Tensor:
        w = self.mapping(z)
        x = self.const.to(z.dtype)[None].repeat(z.shape[0], 1, 1, 1)
        x = self.layers[0](x, w, noise_mode)
        img = self.torgb[0](x, w)
        for j in range(1, len(self.torgb)):
            x = self.layers[2 * j](self.layers[2 * j - 1](x, w, noise_mode), w, noise_mode)
            img = upsample2d(img, self.resample_filter, impl=self.impl) + self.torgb[j](x, w)
        return img


class Conv2dLayer(nn.Module):
    """A convolution with an equalised learning rate, optional FIR downsampling, bias_act."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, act: str = "lrelu", down: int = 1,
                 bias: bool = True, gain: float = 1.0, clamp: Optional[float] = 256, impl: Optional[str] = None):
        super().__init__()
        self.act, self.down, self.gain, self.clamp, self.impl = act, down, gain, clamp, impl
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, x: Tensor) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        k = w.shape[-1]
        if self.down == 1:
            x = conv2d_gradfix.conv2d(x, w, padding=k // 2)
        elif k == 1:
            x = conv2d_gradfix.conv2d(downsample2d(x, self.resample_filter, impl=self.impl), w)
        else:  # filter (padded 2 on each side), then a stride-2 convolution: H -> H / 2, centred as the skip
            x = filter2d(x, self.resample_filter, padding=[0, 1, 0, 1], impl=self.impl)
            x = conv2d_gradfix.conv2d(x, w, stride=2)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        act_gain = None if self.act == "linear" else SQRT2 * self.gain
        return bias_act(x, b, act=self.act, gain=act_gain if act_gain is not None else self.gain, clamp=self.clamp,
                        impl=self.impl)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator: images (N, img_channels, R, R) -> logits (N, 1).

    Args:
        img_resolution, img_channels, channel_base, channel_max: as StyleGAN2Generator's.
        mbstd_group: images per minibatch standard deviation group (the batch must divide by it,
            or be smaller).
        impl: None for fastgan's ops, "ref" for the stock-op reference path.
    """

    def __init__(self, img_resolution: int = 64, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int = 4, impl: Optional[str] = None):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"fastgan: StyleGAN2Discriminator: img_resolution must be a power of two >= 4, got "
                             f"{img_resolution}")
        self.mbstd_group, self.impl = mbstd_group, impl
        ch = lambda r: _channels(r, channel_base, channel_max)  # noqa: E731
        self.fromrgb = Conv2dLayer(img_channels, ch(img_resolution), 1, impl=impl)
        blocks, res = [], img_resolution
        while res > 4:
            cin, cout = ch(res), ch(res // 2)
            blocks.append(nn.ModuleDict({
                "conv0": Conv2dLayer(cin, cin, 3, impl=impl),
                "conv1": Conv2dLayer(cin, cout, 3, down=2, gain=math.sqrt(0.5), impl=impl),
                "skip": Conv2dLayer(cin, cout, 1, act="linear", down=2, bias=False, gain=math.sqrt(0.5),
                                    clamp=None, impl=impl)}))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = ch(4)
        self.conv = Conv2dLayer(c4 + 1, c4, 3, impl=impl)
        self.fc = FullyConnected(c4 * 16, c4, "lrelu", impl=impl)
        self.out = FullyConnected(c4, 1, impl=impl)

    def forward(self, img: Tensor) -> Tensor:
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block["skip"](x) + block["conv1"](block["conv0"](x))
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        y = x.reshape(g, -1, c, h, w)  # groups of g images, one statistic per group
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean([1, 2, 3])
        x = torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], 1)
        return self.out(self.fc(self.conv(x).flatten(1)))
