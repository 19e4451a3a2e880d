"""Stand-ins for the two codebases fastgan.stylegan.patch() serves, written for these tests from
the codebases' published interfaces (nothing of theirs is copied): NVlabs' layout (a
torch_utils/ops package with bias_act, upfirdn2d, conv2d_gradfix, grid_sample_gradfix, and a
training/networks.py that calls them through module attributes) and rosinality's (an `op`
package whose names model.py binds with `from op import ...`). Each op is its stock-op
reference path; the networks are small StyleGAN2-style models: a mapping network, modulated and
demodulated convolutions with upsampling, noise, clamped bias_act, skip toRGB; a residual
discriminator with minibatch standard deviation. write(root) puts both trees under root."""
from pathlib import Path

FILES = {}

FILES["torch_utils/__init__.py"] = ""
FILES["torch_utils/ops/__init__.py"] = ""

FILES["torch_utils/ops/bias_act.py"] = '''
import math
import torch
import torch.nn.functional as F

_ACTS = {  # name: (function of (x, alpha), default alpha, default gain)
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}

def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
    func, def_alpha, def_gain = _ACTS[act]
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = func(x, def_alpha if alpha is None else alpha)
    gain = def_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
'''

FILES["torch_utils/ops/upfirdn2d.py"] = '''
import torch
import torch.nn.functional as F

def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)

def _pad4(p):
    if isinstance(p, int):
        return [p] * 4
    return [p[0], p[0], p[1], p[1]] if len(p) == 2 else list(p)

def _get_filter_size(f):
    return (1, 1) if f is None else (f.shape[-1], f.shape[0])

def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1, separable=None):
    f = torch.as_tensor([1] if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return (f * gain ** (f.ndim / 2)).to(device)

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = _pair(up), _pair(down), _pad4(padding)
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, ux - 1, 0, 0, 0, uy - 1]).reshape(n, c, h * uy, w * ux)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::dy, ::dx]

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
    px0, px1, py0, py1 = _pad4(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    ux, uy = _pair(up)
    px0, px1, py0, py1 = _pad4(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + ux - 1) // 2, px1 + (fw - ux) // 2, py0 + (fh + uy - 1) // 2, py1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * ux * uy, impl=impl)

def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    dx, dy = _pair(down)
    px0, px1, py0, py1 = _pad4(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - dx + 1) // 2, px1 + (fw - dx) // 2, py0 + (fh - dy + 1) // 2, py1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
'''

FILES["torch_utils/ops/conv2d_gradfix.py"] = '''
import contextlib
import torch.nn.functional as F

enabled = False
weight_gradients_disabled = False

@contextlib.contextmanager
def no_weight_gradients(disable=True):
    global weight_gradients_disabled
    old = weight_gradients_disabled
    weight_gradients_disabled = disable or old
    yield
    weight_gradients_disabled = old

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
'''

FILES["torch_utils/ops/grid_sample_gradfix.py"] = '''
import torch.nn.functional as F

enabled = False

def grid_sample(input, grid):
    return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
'''

FILES["training/__init__.py"] = ""

FILES["training/networks.py"] = '''
import math
import torch
from torch_utils.ops import bias_act, conv2d_gradfix, upfirdn2d


class FC(torch.nn.Module):
    def __init__(self, i, o, act="linear", bias_init=0.0, lr=1.0):
        super().__init__()
        self.act, self.gain = act, lr / math.sqrt(i)
        self.weight = torch.nn.Parameter(torch.randn(o, i) / lr)
        self.bias = torch.nn.Parameter(torch.full([o], float(bias_init)))

    def forward(self, x):
        return bias_act.bias_act(x.matmul((self.weight * self.gain).t()), self.bias, act=self.act)


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, f=None):
    n, o, i, k = x.shape[0], *weight.shape[:3]
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    x = x.reshape(1, n * i, *x.shape[2:])
    if up == 1:
        x = conv2d_gradfix.conv2d(x, w.reshape(n * o, i, k, k), padding=k // 2, groups=n)
    else:
        wt = w.transpose(1, 2).reshape(n * i, o, k, k)
        x = conv2d_gradfix.conv_transpose2d(x, wt, stride=2, groups=n)
        x = upfirdn2d.filter2d(x, f, padding=[0, -1, 0, -1], gain=4)  # (2H + 1) -> 2H
    return x.reshape(n, o, *x.shape[2:])


class SynthesisLayer(torch.nn.Module):
    def __init__(self, i, o, w_dim, res, up=1, k=3, act="lrelu", demodulate=True, clamp=256):
        super().__init__()
        self.up, self.act, self.demodulate, self.clamp, self.res = up, act, demodulate, clamp, res
        self.affine = FC(w_dim, i, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn(o, i, k, k))
        self.bias = torch.nn.Parameter(torch.randn(o) * 0.1)
        self.register_buffer("f", upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.register_buffer("noise_const", torch.randn(res, res))
        self.noise_strength = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, w, gain=1):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, self.demodulate, self.up, self.f)
        if self.demodulate:
            x = x + self.noise_const * self.noise_strength
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.act, gain=gain, clamp=self.clamp)


class Generator(torch.nn.Module):
    def __init__(self, z_dim=8, w_dim=8, channels=6, res=16):
        super().__init__()
        self.mapping = torch.nn.ModuleList([FC(z_dim, w_dim, "lrelu", lr=0.01), FC(w_dim, w_dim, "lrelu", lr=0.01)])
        self.const = torch.nn.Parameter(torch.randn(channels, 4, 4))
        self.register_buffer("f", upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.layers, self.torgb = torch.nn.ModuleList(), torch.nn.ModuleList()
        r = 4
        self.layers.append(SynthesisLayer(channels, channels, w_dim, r))
        self.torgb.append(SynthesisLayer(channels, 3, w_dim, r, k=1, act="linear", demodulate=False))
        while r < res:
            r *= 2
            self.layers.append(SynthesisLayer(channels, channels, w_dim, r, up=2))
            self.layers.append(SynthesisLayer(channels, channels, w_dim, r))
            self.torgb.append(SynthesisLayer(channels, 3, w_dim, r, k=1, act="linear", demodulate=False))

    def forward(self, z):
        w = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for fc in self.mapping:
            w = fc(w)
        x = self.const[None].repeat(z.shape[0], 1, 1, 1)
        x = self.layers[0](x, w)
        img = self.torgb[0](x, w)
        for j in range(1, len(self.torgb)):
            x = self.layers[2 * j](self.layers[2 * j - 1](x, w), w)
            img = upfirdn2d.upsample2d(img, self.f) + self.torgb[j](x, w)
        return img


class DiscriminatorBlock(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv0 = torch.nn.Parameter(torch.randn(i, i, 3, 3))
        self.conv1 = torch.nn.Parameter(torch.randn(o, i, 3, 3))
        self.skip = torch.nn.Parameter(torch.randn(o, i, 1, 1))
        self.b0, self.b1 = torch.nn.Parameter(torch.randn(i) * 0.1), torch.nn.Parameter(torch.randn(o) * 0.1)
        self.register_buffer("f", upfirdn2d.setup_filter([1, 3, 3, 1]))

    def forward(self, x):
        g = 1 / math.sqrt(x.shape[1] * 9)
        y = conv2d_gradfix.conv2d(upfirdn2d.downsample2d(x, self.f), self.skip / math.sqrt(x.shape[1]))
        x = bias_act.bias_act(conv2d_gradfix.conv2d(x, self.conv0 * g, padding=1), self.b0, act="lrelu", clamp=256)
        x = upfirdn2d.filter2d(x, self.f, padding=1)
        x = conv2d_gradfix.conv2d(x, self.conv1 * g, stride=2)
        x = bias_act.bias_act(x, self.b1, act="lrelu", gain=math.sqrt(0.5), clamp=256)
        return y * math.sqrt(0.5) + x


class Discriminator(torch.nn.Module):
    def __init__(self, channels=6, res=16):
        super().__init__()
        self.fromrgb = torch.nn.Parameter(torch.randn(channels, 3, 1, 1))
        self.brgb = torch.nn.Parameter(torch.zeros(channels))
        blocks, r = [], res
        while r > 4:
            blocks.append(DiscriminatorBlock(channels, channels))
            r //= 2
        self.blocks = torch.nn.ModuleList(blocks)
        self.conv = torch.nn.Parameter(torch.randn(channels, channels + 1, 3, 3))
        self.bconv = torch.nn.Parameter(torch.zeros(channels))
        self.fc = FC(channels * 16, channels, "lrelu")
        self.out = FC(channels, 1)

    def forward(self, img):
        x = bias_act.bias_act(conv2d_gradfix.conv2d(img, self.fromrgb / math.sqrt(3)), self.brgb, act="lrelu")
        for block in self.blocks:
            x = block(x)
        std = (x - x.mean(0)).square().mean(0).add(1e-8).sqrt().mean().reshape(1, 1, 1, 1)
        x = torch.cat([x, std.repeat(x.shape[0], 1, 4, 4)], 1)
        x = conv2d_gradfix.conv2d(x, self.conv / math.sqrt(x.shape[1] * 9), padding=1)
        x = bias_act.bias_act(x, self.bconv, act="lrelu", clamp=256)
        return self.out(self.fc(x.flatten(1)))
'''

FILES["op/__init__.py"] = '''
from .fused_act import FusedLeakyReLU, fused_leaky_relu
from .upfirdn2d import upfirdn2d
'''

FILES["op/fused_act.py"] = '''
import torch
import torch.nn.functional as F

def fused_leaky_relu(input, bias=None, negative_slope=0.2, scale=2 ** 0.5):
    if bias is not None:
        input = input + bias.view(1, -1, *[1] * (input.ndim - 2))
    return F.leaky_relu(input, negative_slope) * scale

class FusedLeakyReLU(torch.nn.Module):
    def __init__(self, channel, bias=True, negative_slope=0.2, scale=2 ** 0.5):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, input):
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)
'''

FILES["op/upfirdn2d.py"] = '''
import torch.nn.functional as F

def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    ux, uy = (up, up) if isinstance(up, int) else up
    dx, dy = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
    n, c, h, w = input.shape
    x = F.pad(input.reshape(n, c, h, 1, w, 1), [0, ux - 1, 0, 0, 0, uy - 1]).reshape(n, c, h * uy, w * ux)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    k = kernel.flip([0, 1]).to(x.dtype)
    return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), groups=c)[:, :, ::dy, ::dx]
'''

FILES["model.py"] = '''
import math
import torch
import torch.nn.functional as F
from op import FusedLeakyReLU, fused_leaky_relu, upfirdn2d


def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


class Blur(torch.nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(torch.nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = 4 - factor
        self.pad, self.factor = ((p + 1) // 2 + factor - 1, p // 2), factor

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(torch.nn.Module):
    def __init__(self, i, o, activation=False):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(o, i))
        self.bias = torch.nn.Parameter(torch.randn(o) * 0.1)
        self.scale, self.activation = 1 / math.sqrt(i), activation

    def forward(self, x):
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias)
        return F.linear(x, self.weight * self.scale, self.bias)


class Generator(torch.nn.Module):
    def __init__(self, style_dim=8, channels=6):
        super().__init__()
        self.style = torch.nn.Sequential(*[EqualLinear(style_dim, style_dim, True) for _ in range(2)])
        self.const = torch.nn.Parameter(torch.randn(1, channels, 4, 4))
        self.mod = EqualLinear(style_dim, channels)
        self.conv = torch.nn.Parameter(torch.randn(channels, channels, 3, 3))
        self.act = FusedLeakyReLU(channels)
        self.up = Upsample([1, 3, 3, 1])
        self.blur = Blur([1, 3, 3, 1], pad=(1, 1))
        self.to_rgb = torch.nn.Parameter(torch.randn(3, channels, 1, 1))

    def forward(self, z):
        s = self.style(z)
        x = self.const.repeat(z.shape[0], 1, 1, 1) * (1 + self.mod(s))[:, :, None, None]
        x = self.act(F.conv2d(x, self.conv / math.sqrt(self.conv[0].numel()), padding=1))
        x = self.blur(self.up(x))
        return F.conv2d(x, self.to_rgb)


class Discriminator(torch.nn.Module):
    def __init__(self, channels=6):
        super().__init__()
        self.conv = torch.nn.Parameter(torch.randn(channels, 3, 3, 3))
        self.act = FusedLeakyReLU(channels)
        self.blur = Blur([1, 3, 3, 1], pad=(2, 2))
        self.down = torch.nn.Parameter(torch.randn(channels, channels, 3, 3))
        self.b = torch.nn.Parameter(torch.randn(channels) * 0.1)
        self.out = EqualLinear(channels * 16, 1)

    def forward(self, img):
        x = self.act(F.conv2d(img, self.conv / math.sqrt(27), padding=1))
        x = F.conv2d(self.blur(x), self.down / math.sqrt(self.down[0].numel()), stride=2)
        x = fused_leaky_relu(x, self.b)
        return self.out(F.adaptive_avg_pool2d(x, 4).flatten(1))
'''


def write(root):
    """Writes both trees under root (a folder to put on sys.path)."""
    for name, text in FILES.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"))
