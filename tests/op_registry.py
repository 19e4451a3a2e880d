"""The one registry of fastgan's dispatcher ops, for every cross-cutting test (as PyTorch's
OpInfo is for its ops): per op of csrc/op_list.inc, its sample calls (every dtype and layout it
accepts, arguments at the edges of their ranges), its bad calls with the exact error, and its
float64 reference in stock ops, with the op's argument order and outputs.

Tests that loop over it: tests/test_op_registry.py (every op has an entry; direct calls match
the reference, forward and gradient, at every dtype; bad calls raise their error; every tensor
argument is checked for its device; opcheck), tests/test_cuda_emu.py (the emulated CUDA kernels
against the CPU ops) and tests/sanitize_kernels.py (every kernel under compute-sanitizer).

A new op adds one `OpInfo` to OPS below; its own tests file keeps the parity tests that need
more than a sample call (training runs, dtype error bounds, model-level checks)."""
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fastgan import reference
from fastgan.stylegan import bias_act as sg_bias_act
from fastgan.stylegan import filtered_lrelu as sg_filtered_lrelu

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# contiguous; channels_last (4-D inputs only); strided: the main input a view whose last
# dimension steps by 2 elements (a slice), which the ops must read as a dense tensor would be.
LAYOUTS = ("contiguous", "channels_last", "strided")
SHAPE = (2, 5, 4, 6)  # the samples' (N, C, H, W): no extent a multiple of a vector width
ACTS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
INTEGER_INPUT = ("fastgan: input must be a floating-point tensor (float32, float64, float16 or bfloat16), got "
                 "torch.int64")


@dataclass
class Sample:
    """One call of an op: its arguments in schema order. ref_args: the reference's arguments
    where they differ (the signal a packed record was made from). grads: the indices of the
    arguments the op's autograd differentiates in this call."""
    args: tuple
    grads: Tuple[int, ...] = ()
    ref_args: Optional[tuple] = None
    note: str = ""


@dataclass
class Bad:
    """A call the op must refuse: the exception type and the first line of its message, exactly."""
    note: str
    args: Callable[[], tuple]
    error: type
    message: str


@dataclass
class OpInfo:
    name: str
    samples: Callable  # (ops, dtype, layout, device, shape) -> list[Sample]; ops: the op library to build with
    reference: Callable  # float64 reference: the op's outputs (a tuple where the schema returns one; None: not
    #                      compared, e.g. a packed record), mutating its mutable arguments as the op does
    bad: Sequence[Bad] = field(default_factory=list)
    layouts: Tuple[str, ...] = LAYOUTS
    differentiable: bool = False  # the op has an autograd kernel (the others are backward or kernel-only ops)
    emulated: bool = True  # a kernel op: csrc/cuda has its kernel, and the emulated library runs it


# --- building samples ---------------------------------------------------------------------------

def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(shape, dtype, device, g, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift).to(device=device, dtype=dtype)


def in_layout(t, layout):
    """t (values kept) in the given layout: channels_last for 4-D tensors, or a strided view."""
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        wide = t.new_zeros((*t.shape[:-1], 2 * t.shape[-1]))
        view = wide[..., ::2]
        view.copy_(t)
        return view
    return t


def stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _bn_parts(dtype, device, c, g):
    """BatchNorm's weight, bias, running mean and var (in the model's dtype) and counter."""
    w = _randn(c, dtype, device, g, 0.5, 1.0)
    b = _randn(c, dtype, device, g, 0.5)
    rm = _randn(c, dtype, device, g)
    rv = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(device=device, dtype=dtype)
    return w, b, rm, rv, torch.zeros((), dtype=torch.long, device=device)


def _act_cases():
    """(activation, negative_slope) pairs: every activation, leaky_relu's slope at its edges."""
    return [("identity", 0.0), ("relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", 0.0), ("leaky_relu", 1.0),
            ("leaky_relu", 3.0), ("tanh", 0.0), ("sigmoid", 0.0)]


def _x(dtype, layout, device, shape, g, scale=1.5, shift=0.5):
    return in_layout(_randn(shape, dtype, device, g, scale, shift), layout)


def _vjp(fn, args, diff, grad_outputs):
    """Gradients of sum(fn(args)[i] * grad_outputs[i]) in the arguments `diff` (None where the
    output does not depend on one), in float64."""
    args = [a.detach().requires_grad_() if i in diff and isinstance(a, torch.Tensor) else a
            for i, a in enumerate(args)]
    with torch.enable_grad():
        outs = fn(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        pairs = [(o, g) for o, g in zip(outs, grad_outputs) if g is not None]
        grads = torch.autograd.grad([o for o, _ in pairs], [args[i] for i in diff], [g for _, g in pairs],
                                    allow_unused=True)
    return grads


def _masked_vjp(forward, args, grad_out, mask):
    """The backward ops' gradients: those of forward(*args) against grad_out, each where mask
    (one flag per argument, a prefix of args) asks for it, None elsewhere; later arguments'
    gradients always."""
    grads = _vjp(forward, args, tuple(range(len(args))), (grad_out,))
    return tuple(gr if i >= len(mask) or mask[i] else None for i, gr in enumerate(grads))


# --- BatchNorm + activation --------------------------------------------------------------------

def _batch_stats(x):
    return reference.batch_norm_stats(x)


def ref_batch_norm_act(input, weight, bias, running_mean, running_var, num_batches_tracked, training, momentum, eps,
                       activation, negative_slope):
    use_batch = training or running_mean is None
    out = reference.batch_norm_act(input, weight, bias, running_mean, running_var, num_batches_tracked, training,
                                   momentum, eps, activation, negative_slope)
    if use_batch:
        mean, var = _batch_stats(input)
    else:
        mean, var = running_mean.to(stats_dtype(input.dtype)), running_var.to(stats_dtype(input.dtype))
    return out, mean, var


def samples_batch_norm_act(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(1)
    out = []
    for i, (act, slope) in enumerate(_act_cases()):
        x = _x(dtype, layout, device, shape, g)
        w, b, rm, rv, nbt = _bn_parts(dtype, device, shape[1], g)
        momentum, training = [(0.1, True), (None, True), (0.1, False), (0.0, True), (1.0, True)][i % 5]
        out.append(Sample((x, w, b, rm, rv, nbt, training, momentum, 1e-5, act, slope), grads=(0, 1, 2),
                          note=f"{act} {slope} momentum {momentum} training {training}"))
    x = _x(dtype, layout, device, shape, g)
    out.append(Sample((x, None, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0), grads=(0,),
                      note="no affine, no running statistics"))
    w, b, rm, rv, _ = _bn_parts(dtype, device, shape[1], g)
    out.append(Sample((x, w, b, rm, rv, None, True, None, 1.0, "tanh", 0.0), grads=(0, 1, 2),
                      note="eps 1, momentum None without a counter"))
    two = _x(dtype, layout if layout != "strided" else "contiguous", device, (2, shape[1], 1, 1), g)
    out.append(Sample((in_layout(two, layout), w, b, rm, rv, None, True, 0.1, 1e-5, "leaky_relu", 0.2),
                      grads=(0, 1, 2), note="two values per channel, the fewest training accepts"))
    return out


def ref_batch_norm_act_backward(grad_out, input, weight, bias, save_mean, save_var, training, eps, activation,
                                negative_slope):
    c, sdt = input.size(1), stats_dtype(input.dtype)
    w = weight if weight is not None else input.new_ones(c)
    b = bias if bias is not None else input.new_zeros(c)

    def forward(x, w, b):
        y = (F.batch_norm(x, None, None, w, b, True, 0.0, eps) if training
             else F.batch_norm(x, save_mean.to(x.dtype), save_var.to(x.dtype), w, b, False, 0.0, eps))
        return reference.activation(y, activation, negative_slope)

    gx, gw, gb = _vjp(forward, (input, w, b), (0, 1, 2), (grad_out,))
    return gx, gw.to(sdt), gb.to(sdt)


def samples_batch_norm_act_backward(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(2)
    out = []
    for i, (act, slope) in enumerate(_act_cases()):
        x = _x(dtype, layout, device, shape, g)
        w, b, rm, rv, _ = _bn_parts(dtype, device, shape[1], g)
        training = i % 3 != 2
        mean, var = _batch_stats(x) if training else (rm.to(stats_dtype(dtype)), rv.to(stats_dtype(dtype)))
        affine = (w, b) if i % 4 != 3 else (None, None)
        out.append(Sample((in_layout(_randn(shape, dtype, device, g), layout), x, *affine, mean, var, training, 1e-5,
                           act, slope), note=f"{act} {slope} training {training} affine {affine[0] is not None}"))
    return out


def samples_batch_norm_update_stats(ops, dtype, layout, device, shape=SHAPE):
    g, c = _gen(3), shape[1]
    out = []
    for momentum, counted in ((0.1, True), (None, True), (0.0, False), (1.0, True), (None, False)):
        _, _, rm, rv, nbt = _bn_parts(dtype, device, c, g)
        nbt.fill_(3)
        mean, var = _randn(c, stats_dtype(dtype), device, g), _randn(c, stats_dtype(dtype), device, g).abs()
        out.append(Sample((rm, rv, nbt if counted else None, mean, var, momentum, 7),
                          note=f"momentum {momentum} counter {counted}"))
    _, _, rm, rv, nbt = _bn_parts(dtype, device, c, g)
    out.append(Sample((rm, rv, nbt, _randn(c, stats_dtype(dtype), device, g), torch.ones(c, dtype=stats_dtype(dtype),
                                                                                             device=device), 0.1, 2),
                      note="count 2, the fewest an unbiased variance allows"))
    return out


def ref_batch_norm_update_stats(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count):
    factor = 0.0 if momentum is None else momentum
    if num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    unbiased = save_var.double() * count / (count - 1)
    running_mean.copy_(running_mean.double() * (1 - factor) + save_mean.double() * factor)
    running_var.copy_(running_var.double() * (1 - factor) + unbiased * factor)
    return None


def samples_batch_norm_stats(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(4)
    return [Sample((_x(dtype, layout, device, shape, g, 3.0, 100.0),), note="mean 100: the shift stays exact"),
            Sample((_x(dtype, layout, device, (1, shape[1], 1, 3), g),), note="three values per channel")]


def _split_bn_samples(dtype, layout, device, shape, g):
    out = []
    for act, slope in (("leaky_relu", 0.2), ("tanh", 0.0), ("relu", 0.0), ("sigmoid", 0.0)):
        x = _x(dtype, layout, device, shape, g)
        w, b, _, _, _ = _bn_parts(dtype, device, shape[1], g)
        mean, var = _batch_stats(x)
        out.append((in_layout(_randn(shape, dtype, device, g), layout), x, w, b, mean, var, act, slope))
    return out


def samples_batch_norm_act_backward_reduce(ops, dtype, layout, device, shape=SHAPE):
    return [Sample((go, x, w if i % 2 == 0 else None, b, mean, var, 1e-5, act, slope), note=act)
            for i, (go, x, w, b, mean, var, act, slope) in enumerate(
                _split_bn_samples(dtype, layout, device, shape, _gen(5)))]


def samples_batch_norm_act_backward_elemt(ops, dtype, layout, device, shape=SHAPE):
    out = []
    n = shape[0] * shape[2] * shape[3]
    for i, (go, x, w, b, mean, var, act, slope) in enumerate(_split_bn_samples(dtype, layout, device, shape,
                                                                               _gen(6))):
        w = w if i % 2 == 0 else None
        sum_dy, sum_dy_xmu = reference.batch_norm_act_backward_reduce(go, x, w, b, mean, var, 1e-5, act, slope)
        out.append(Sample((go, x, w, b, mean, var, sum_dy / n, sum_dy_xmu / n, 1e-5, act, slope), note=act))
    return out


# --- activations and bias + activation ---------------------------------------------------------

def samples_activation(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(7)
    out = [Sample((_x(dtype, layout, device, shape, g, 3.0), act, slope), grads=(0,), note=f"{act} {slope}")
           for act, slope in _act_cases()]
    out.append(Sample((_randn((0, 3), dtype, device, g), "tanh", 0.0), grads=(0,), note="empty"))
    return out


def samples_activation_backward(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(8)
    out = []
    for act, slope in _act_cases():
        y = in_layout(reference.activation(_randn(shape, dtype, device, g, 3.0), act, slope), layout)
        out.append(Sample((in_layout(_randn(shape, dtype, device, g), layout), y, act, slope), note=f"{act} {slope}"))
    return out


def _rows(shape):
    """The linear layers' (rows, features) shape of the 4-D sample shape."""
    return (shape[0] * shape[1] * shape[2], shape[3])


def samples_bias_act(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(9)
    rows = _rows(shape)
    out = [Sample((_x(dtype, layout, device, rows, g, 3.0), _randn(rows[1], dtype, device, g), act, slope),
                  note=f"{act} {slope}") for act, slope in _act_cases()]
    out.append(Sample((_x(dtype, layout, device, (2, 3, rows[1]), g), _randn(rows[1], dtype, device, g), "relu",
                       0.0), note="3-D rows"))
    return out


def samples_bias_act_backward(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(10)
    rows = _rows(shape)
    out = []
    for act, slope in _act_cases():
        y = in_layout(reference.activation(_randn(rows, dtype, device, g, 3.0), act, slope), layout)
        out.append(Sample((in_layout(_randn(rows, dtype, device, g), layout), y, act, slope), note=f"{act} {slope}"))
    return out


# --- losses -------------------------------------------------------------------------------------

def _loss_and_grad(loss_fn, input):
    """(loss, d sum(loss) / d input) of a stock loss, as the loss ops return them."""
    (grad,) = _vjp(lambda x: loss_fn(x), (input,), (0,), (torch.ones_like(loss_fn(input)),))
    return loss_fn(input), grad


def ref_bce_with_logits(input, target, target_value, reduction):
    return _loss_and_grad(lambda x: reference.bce_with_logits(x, target, target_value, reduction), input)


def samples_bce_with_logits(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(11)
    out = []
    for reduction in (0, 1, 2):
        x = _x(dtype, layout, device, shape, g, 4.0, 0.0)
        out.append(Sample((x, None, 0.9, reduction), grads=(0,), note=f"target 0.9, reduction {reduction}"))
        target = in_layout(torch.rand(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype), layout)
        out.append(Sample((x, target, 0.0, reduction), grads=(0,), note=f"target tensor, reduction {reduction}"))
    big = _randn(shape, dtype, device, g, 60.0)
    out.append(Sample((big, None, 1.0, 1), grads=(0,), note="logits of magnitude up to ~200: no overflow"))
    return out


def ref_logit_loss(input, target, kind, reduction):
    return _loss_and_grad(lambda x: reference.logit_loss(x, target, kind, reduction), input)


def samples_logit_loss(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(12)
    out = []
    for i, (kind, target) in enumerate((("bce", 1.0), ("bce", 0.0), ("hinge", 1.0), ("hinge", 0.0), ("lsgan", 0.9),
                                        ("lsgan", 0.0), ("linear", 1.0), ("linear", 0.0))):
        x = _x(dtype, layout, device, shape, g, 2.0, 0.0)
        out.append(Sample((x, target, kind, i % 3), grads=(0,), note=f"{kind} {target} reduction {i % 3}"))
    return out


# --- StyleGAN's ops -----------------------------------------------------------------------------

def _filter_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def samples_upfirdn2d(ops, dtype, layout, device, shape=SHAPE):
    g, fdt = _gen(13), _filter_dtype(dtype)
    f2 = torch.rand(4, 4, generator=g, dtype=torch.float64).to(device=device, dtype=fdt)
    f1 = torch.rand(3, generator=g, dtype=torch.float64).to(device=device, dtype=fdt)
    calls = [
        (f2, [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0, "StyleGAN2's upsample"),
        (f1, [1, 1], [2, 2], [1, 1, 1, 1], True, 1.0, "separable downsample, flipped"),
        (f2, [1, 3], [2, 1], [-1, 4, 4, 2], False, 1.0, "per-axis factors, a crop"),
        (f1[:1], [1, 1], [1, 1], [0, 0, 0, 0], False, 1.0, "one tap: a scaled copy"),
        (f2[:1, :3], [3, 1], [1, 3], [0, -2, 2, 2], False, 2.0, "a 1 x 3 filter, up 3, down 3, cropped"),
    ]
    return [Sample((_x(dtype, layout, device, shape, g), f, up, down, pad, flip, gain), grads=(0,), note=note)
            for f, up, down, pad, flip, gain, note in calls
            if _fir_leaves_output(shape, f, up, down, pad)]


def _fir_leaves_output(shape, f, up, down, pad):
    """Whether upfirdn2d of an image of `shape` leaves an output (the samples at 1 x 1 images
    drop the calls that would not)."""
    fh, fw = (f.shape[0], f.shape[0]) if f.dim() == 1 else tuple(f.shape)
    return min(reference.fir_out_len(shape[3], up[0], down[0], pad[0], pad[1], fw),
               reference.fir_out_len(shape[2], up[1], down[1], pad[2], pad[3], fh)) > 0


def _sg_dim(x, dim):
    return dim + x.dim() if dim < 0 else dim


ref_stylegan_bias_act = sg_bias_act.fallback


def _sg_bias_act_cases():
    """(act, alpha, gain, clamp, dim, with bias): every activation of NVlabs' table, clamp on
    and off, bias along the channel and other dimensions."""
    cases = []
    for i, act in enumerate(sorted(sg_bias_act.ACTIVATIONS)):
        spec = sg_bias_act.ACTIVATIONS[act]
        clamp = 0.5 if i % 2 else -1.0
        cases.append((act, spec.def_alpha, spec.def_gain, clamp, (1, 3, -1, -3)[i % 4], i % 3 != 2))
    cases.append(("lrelu", 0.0, 1.0, 0.0, 1, True))  # slope 0, clamp 0 (every output 0)
    return cases


def samples_stylegan_bias_act(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(14)
    out = []
    for act, alpha, gain, clamp, dim, with_bias in _sg_bias_act_cases():
        x = _x(dtype, layout, device, shape, g, 2.0, 0.0)
        b = _randn(shape[_sg_dim(x, dim)], dtype, device, g) if with_bias else None
        out.append(Sample((x, b, dim, act, alpha, gain, clamp), grads=(0, 1) if with_bias else (0,),
                          note=f"{act} clamp {clamp} dim {dim} bias {with_bias}"))
    return out


def ref_stylegan_bias_act_backward(grad_out, x, b, dim, act, alpha, gain, clamp):
    (gx,) = _vjp(lambda x: ref_stylegan_bias_act(x, b, dim, act, alpha, gain, clamp), (x,), (0,), (grad_out,))
    return gx


def samples_stylegan_bias_act_backward(ops, dtype, layout, device, shape=SHAPE):
    return [Sample((in_layout(_randn(shape, dtype, device, _gen(15 + i)), layout), *s.args), note=s.note)
            for i, s in enumerate(samples_stylegan_bias_act(ops, dtype, layout, device, shape))]


def ref_filtered_lrelu_act(z, gain, slope, clamp):
    a = F.leaky_relu(z, slope) * gain
    return (a.clamp(-clamp, clamp) if clamp >= 0 else a), None  # the sign record's packing is the op's own


def samples_filtered_lrelu_act(ops, dtype, layout, device, shape=SHAPE):
    g = _gen(16)
    return [Sample((_x(dtype, layout, device, shape, g, 2.0, 0.0), gain, slope, clamp), note=f"clamp {clamp}")
            for gain, slope, clamp in ((math.sqrt(2), 0.2, -1.0), (1.4, 0.2, 0.5), (1.0, 0.0, 0.0), (2.0, 1.0, 3.0))]


def ref_filtered_lrelu_act_backward(grad_a, z, gain, slope, clamp):
    (gz,) = _vjp(lambda z: ref_filtered_lrelu_act(z, gain, slope, clamp)[0], (z,), (0,), (grad_a,))
    return gz


def samples_filtered_lrelu_act_backward(ops, dtype, layout, device, shape=SHAPE):
    out = []
    for i, s in enumerate(samples_filtered_lrelu_act(ops, dtype, layout, device, shape)):
        z, gain, slope, clamp = s.args
        _, sign = ops.filtered_lrelu_act(z, gain, slope, clamp)
        grad_a = _randn(shape, dtype, device, _gen(20 + i))
        out.append(Sample((grad_a, sign, gain, slope), ref_args=(grad_a, z, gain, slope, clamp), note=s.note))
    return out


def ref_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    return sg_filtered_lrelu.fallback(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter), None


def samples_filtered_lrelu(ops, dtype, layout, device, shape=SHAPE):
    g, fdt = _gen(17), _filter_dtype(dtype)
    fu = torch.rand(4, generator=g, dtype=torch.float64).to(device=device, dtype=fdt)
    fd = torch.rand(3, 3, generator=g, dtype=torch.float64).to(device=device, dtype=fdt)
    one = torch.ones(1, 1, dtype=fdt, device=device)
    calls = [
        (fu, fd, True, 2, 2, [2, 1, 2, 1], math.sqrt(2), 0.2, -1.0, False, "up 2, down 2, separable fu"),
        (fu, fd, False, 2, 1, [1, 2, 3, 0], 1.0, 0.2, 0.5, True, "up 2, clamp, flipped, no bias"),
        (one, fd, True, 1, 2, [1, 1, 1, 1], 2.0, 0.0, 0.0, False, "identity fu, slope 0, clamp 0"),
        (fu, one, True, 2, 1, [-1, 0, 0, -1], math.sqrt(2), 1.0, -1.0, False, "identity fd, negative padding"),
    ]
    out = []
    for fu_, fd_, with_bias, up, down, pad, gain, slope, clamp, flip, note in calls:
        mid = (shape[0], shape[1], *(reference.fir_out_len(shape[i], up, 1, pad[j], pad[j + 1], fu_.shape[-1])
                                     for i, j in ((2, 2), (3, 0))))
        if min(mid[2:]) < 1 or not _fir_leaves_output(mid, fd_, [1, 1], [down, down], [0, 0, 0, 0]):
            continue
        x = _x(dtype, layout, device, shape, g)
        b = _randn(shape[1], dtype, device, g) if with_bias else None
        out.append(Sample((x, fu_, fd_, b, up, down, pad, gain, slope, clamp, flip),
                          grads=(0, 3) if with_bias else (0,), note=note))
    return out


# --- the layers: convolution or linear, then the kernel ops ------------------------------------

CONV_ARGS = {False: ((1, 2), (1, 0), (1, 1), False, (0, 0), 1), True: ((2, 1), (1, 1), (1, 1), True, (1, 0), 1)}


def _conv_weight(dtype, device, c_in, c_out, transposed, g, groups=1):
    shape = (c_in, c_out // groups, 3, 3) if transposed else (c_out, c_in // groups, 3, 3)
    return _randn(shape, dtype, device, g, 0.3)


def samples_conv_bn_act(ops, dtype, layout, device, shape=SHAPE):
    g, c_out = _gen(18), 4
    out = []
    for i, (act, slope) in enumerate(_act_cases()):
        transposed = i % 2 == 1
        x = _x(dtype, layout, device, shape, g)
        weight = _conv_weight(dtype, device, shape[1], c_out, transposed, g)
        conv_bias = _randn(c_out, dtype, device, g) if i % 3 == 0 else None
        w, b, rm, rv, nbt = _bn_parts(dtype, device, c_out, g)
        momentum, training = [(0.1, True), (None, True), (0.1, False), (1.0, True)][i % 4]
        affine = (w, b) if i % 5 != 4 else (None, None)
        running = (rm, rv, nbt) if i % 6 != 5 else (None, None, None)
        grads = (0, 1) + ((2,) if conv_bias is not None else ()) + ((9, 10) if affine[0] is not None else ())
        out.append(Sample((x, weight, conv_bias, *CONV_ARGS[transposed], *affine, *running, training, momentum, 1e-5,
                           act, slope), grads=grads, note=f"{act} {slope} transposed {transposed} training {training}"))
    x = _x(dtype, layout, device, shape, g)
    weight = _conv_weight(dtype, device, shape[1], 5, False, g)
    w, b, rm, rv, nbt = _bn_parts(dtype, device, 5, g)
    out.append(Sample((x, weight[:, :1].contiguous(), None, (1, 1), (1, 1), (1, 1), False, (0, 0), 5, w, b, rm, rv,
                       nbt, True, 0.1, 1e-5, "relu", 0.0), grads=(0, 1, 9, 10), note="depthwise (groups 5)"))
    return out


def ref_conv_bn_act(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups, bn_weight,
                    bn_bias, running_mean, running_var, num_batches_tracked, training, momentum, eps, activation,
                    negative_slope):
    y = reference.conv(input, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups)
    out, mean, var = ref_batch_norm_act(y, bn_weight, bn_bias, running_mean, running_var, num_batches_tracked, training,
                                        momentum, eps, activation, negative_slope)
    return out, y, mean, var


def samples_conv_bn_act_backward(ops, dtype, layout, device, shape=SHAPE):
    out = []
    masks = ([True, True, False], [False, True, False], [True, True, True], [False, False, False])
    for i, s in enumerate(samples_conv_bn_act(ops, dtype, layout, device, shape)):
        (x, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups, w, b, rm, rv, nbt,
         training, momentum, eps, act, slope) = s.args
        y = reference.conv(x, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups)
        batch_stats = training or rm is None
        mean, var = _batch_stats(y) if batch_stats else (rm.to(stats_dtype(dtype)), rv.to(stats_dtype(dtype)))
        grad_out = in_layout(_randn(y.shape, dtype, device, _gen(30 + i)), layout if y.dim() == 4 else "contiguous")
        mask = masks[i % 4]
        out.append(Sample((grad_out, x, weight, y, w, b, mean, var, stride, padding, dilation, transposed,
                           output_padding, groups, batch_stats, eps, act, slope, mask), note=f"{s.note} mask {mask}"))
    return out


def ref_conv_bn_act_backward(grad_out, input, weight, conv_out, bn_weight, bn_bias, save_mean, save_var, stride,
                             padding, dilation, transposed, output_padding, groups, batch_stats, eps, activation,
                             negative_slope, output_mask):
    c = conv_out.size(1)
    w = bn_weight if bn_weight is not None else conv_out.new_ones(c)
    b = bn_bias if bn_bias is not None else conv_out.new_zeros(c)
    conv_bias = conv_out.new_zeros(c)
    # conv_out less the convolution: the conv bias the layer added (the op is not given it)
    offset = conv_out - reference.conv(input, weight, None, stride, padding, dilation, transposed, output_padding,
                                       groups)

    def forward(x, weight, conv_bias, w, b):
        y = reference.conv(x, weight, conv_bias, stride, padding, dilation, transposed, output_padding, groups) + offset
        y = (F.batch_norm(y, None, None, w, b, True, 0.0, eps) if batch_stats
             else F.batch_norm(y, save_mean.to(y.dtype), save_var.to(y.dtype), w, b, False, 0.0, eps))
        return reference.activation(y, activation, negative_slope)

    *conv_grads, grad_w, grad_b = _masked_vjp(forward, (input, weight, conv_bias, w, b), grad_out, output_mask)
    return (*conv_grads, grad_w if bn_weight is not None else None, grad_b if bn_bias is not None else None)


def samples_conv_act(ops, dtype, layout, device, shape=SHAPE):
    g, c_out = _gen(19), 4
    out = []
    for i, (act, slope) in enumerate(_act_cases()):
        transposed = i % 2 == 0
        x = _x(dtype, layout, device, shape, g)
        weight = _conv_weight(dtype, device, shape[1], c_out, transposed, g)
        bias = _randn(c_out, dtype, device, g) if i % 3 != 1 else None
        out.append(Sample((x, weight, bias, *CONV_ARGS[transposed], act, slope),
                          grads=(0, 1, 2) if bias is not None else (0, 1),
                          note=f"{act} {slope} transposed {transposed}"))
    return out


ref_conv_act = reference.conv_act


def samples_conv_act_backward(ops, dtype, layout, device, shape=SHAPE):
    out = []
    masks = ([True, True, True], [False, True, False], [True, False, False], [False, False, True])
    for i, s in enumerate(samples_conv_act(ops, dtype, layout, device, shape)):
        x, weight, bias, stride, padding, dilation, transposed, output_padding, groups, act, slope = s.args
        y = ref_conv_act(*s.args)
        grad_out = in_layout(_randn(y.shape, dtype, device, _gen(40 + i)), layout if layout != "strided" else
                             "contiguous")
        out.append(Sample((grad_out, x, weight, y, stride, padding, dilation, transposed, output_padding, groups, act,
                           slope, masks[i % 4]), ref_args=(grad_out, x, weight, bias, *s.args[3:], masks[i % 4]),
                          note=f"{s.note} mask {masks[i % 4]}"))
    return out


def ref_conv_act_backward(grad_out, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                          activation, negative_slope, output_mask):
    c = grad_out.size(1)
    bias = bias if bias is not None else grad_out.new_zeros(c)

    def forward(x, w, b):
        return ref_conv_act(x, w, b, stride, padding, dilation, transposed, output_padding, groups, activation,
                            negative_slope)

    return _masked_vjp(forward, (input, weight, bias), grad_out, output_mask)


def samples_linear_act(ops, dtype, layout, device, shape=SHAPE):
    g, features = _gen(21), 7
    rows = _rows(shape)
    out = []
    for i, (act, slope) in enumerate(_act_cases()):
        x = _x(dtype, layout, device, rows if i % 3 else (2, rows[0] // 2 or 1, rows[1]), g)
        weight = _randn((features, rows[1]), dtype, device, g, 0.4)
        bias = _randn(features, dtype, device, g) if i % 4 != 1 else None
        out.append(Sample((x, weight, bias, act, slope), grads=(0, 1, 2) if bias is not None else (0, 1),
                          note=f"{act} {slope} {x.dim()}-D"))
    return out


ref_linear_act = reference.linear_act


def samples_linear_act_backward(ops, dtype, layout, device, shape=SHAPE):
    out = []
    masks = ([True, True, True], [True, False, False], [False, True, True], [False, False, False])
    for i, s in enumerate(samples_linear_act(ops, dtype, layout, device, shape)):
        x, weight, bias, act, slope = s.args
        y = ref_linear_act(*s.args)
        grad_out = _randn(y.shape, dtype, device, _gen(50 + i))
        mask = list(masks[i % 4])
        out.append(Sample((grad_out, x, weight, y, act, slope, mask), ref_args=(grad_out, x, weight, bias, act, slope,
                                                                                  mask), note=f"{s.note} mask {mask}"))
    return out


def ref_linear_act_backward(grad_out, input, weight, bias, activation, negative_slope, output_mask):
    bias = bias if bias is not None else grad_out.new_zeros(weight.size(0))
    return _masked_vjp(lambda x, w, b: ref_linear_act(x, w, b, activation, negative_slope), (input, weight, bias),
                       grad_out, output_mask)


# --- bad calls ----------------------------------------------------------------------------------

def _f(*shape, dtype=torch.float32):
    return torch.randn(shape, generator=_gen(99), dtype=torch.float64).to(dtype)


def _int(*shape):
    return torch.ones(shape, dtype=torch.int64)


BN = (None, None, None, None, None, True, 0.1, 1e-5, "relu", 0.0)  # batch_norm_act's arguments after the input


def _negative_slope(op):
    return f"fastgan: {op}: negative_slope must be >= 0 (the backward reads the sign from the output), got -0.2"


X = (2, 4, 3, 3)  # the bad calls' input shape
FIR0 = ([1, 1], [1, 1], [0, 0, 0, 0], False, 1.0)  # upfirdn2d's arguments after the filter: a plain filter
CONV = ((1, 1), (1, 1), (1, 1), False, (0, 0), 1)
CONV_T = ((2, 2), (1, 1), (1, 1), True, (0, 0), 1)
FL = (None, 1, 1, [1, 1, 1, 1], 1.0, 0.2, -1.0, False)  # filtered_lrelu's arguments after the filters


def _mean(c=4):
    return torch.zeros(c)


def _var(c=4):
    return torch.ones(c)


def _bn(c):
    return torch.ones(c), torch.zeros(c), _mean(c), _var(c), torch.zeros((), dtype=torch.long)


def _sg(x, b, dim=1, act="lrelu"):
    return (x, b, dim, act, 0.2, 1.0, -1.0)


ACTIVATION_NAMES = "['identity', 'leaky_relu', 'relu', 'sigmoid', 'tanh']"
REDUCTION = "fastgan: reduction must be 0 (none), 1 (mean) or 2 (sum), got {}"


def _grad_out_shape(got, like_name, like):
    return f"fastgan: grad_out has shape {got} but {like_name} has shape {like}"


def _float_tensor(name, dtype="torch.int64"):
    return f"fastgan: {name} must be a floating-point tensor (float32, float64, float16 or bfloat16), got {dtype}"


BAD = {
    "batch_norm_act": [
        Bad("integer input", lambda: (_int(*X), *BN), TypeError, INTEGER_INPUT),
        Bad("2-D input", lambda: (_f(3, 4), *BN), ValueError,
            "fastgan: BatchNorm2d+ReLU expects a 4-D input (N, C, H, W), got a 2-D tensor of shape (3, 4)"),
        Bad("weight of 5 for 4 channels", lambda: (_f(*X), _f(5), *BN[1:]), ValueError,
            "fastgan: BatchNorm2d+ReLU: BatchNorm weight has shape (5,) but the input has 4 channels (input shape "
            "(2, 4, 3, 3))"),
        Bad("one value per channel in training", lambda: (_f(1, 4, 1, 1), *BN), ValueError,
            "Expected more than 1 value per channel when training, got input size torch.Size([1, 4, 1, 1])"),
        Bad("a counter of two elements", lambda: (_f(*X), None, None, _mean(), _var(), torch.zeros(2, dtype=torch.long),
                                                  True, None, 1e-5, "relu", 0.0), ValueError,
            "fastgan: BatchNorm2d+ReLU: num_batches_tracked must be a one-element torch.int64 tensor on cpu, got "
            "torch.int64 of shape (2,) on cpu"),
        Bad("unknown activation", lambda: (_f(*X), *BN[:-2], "gelu", 0.0), ValueError,
            f"fastgan: unknown activation 'gelu'; expected one of {ACTIVATION_NAMES}"),
    ],
    "batch_norm_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 4, 3, 2), _f(*X), None, None, _mean(), _var(), True, 1e-5,
                                                  "relu", 0.0), ValueError,
            _grad_out_shape("(2, 4, 3, 2)", "input", "(2, 4, 3, 3)")),
        Bad("integer grad_out", lambda: (_int(*X), _f(*X), None, None, _mean(), _var(), True, 1e-5, "relu", 0.0),
            TypeError, _float_tensor("grad_out")),
        Bad("save_mean of 5 for 4 channels", lambda: (_f(*X), _f(*X), None, None, _mean(5), _var(), True, 1e-5, "relu",
                                                      0.0), ValueError,
            "fastgan: save_mean must be a 1-D tensor of 4 elements (one per channel), got shape (5,)"),
    ],
    "batch_norm_update_stats": [
        Bad("count 1", lambda: (_f(4), _var(), None, _mean(), _var(), 0.1, 1), ValueError,
            "fastgan: batch_norm_update_stats needs more than one value per channel, got 1"),
        Bad("running statistics of 5 for 4", lambda: (_f(5), _var(5), None, _mean(), _var(), 0.1, 5), ValueError,
            "fastgan: batch_norm_update_stats: running_mean, running_var, save_mean and save_var must be 1-D tensors "
            "of one value per channel each, got shapes (5,), (5,), (4,) and (4,)"),
        Bad("running statistics of two dtypes", lambda: (_f(4), _var().double(), None, _mean(), _var(), 0.1, 5),
            TypeError, "fastgan: batch_norm_update_stats: running_mean and running_var must have one dtype, got "
                       "torch.float32 and torch.float64"),
        Bad("a float counter", lambda: (_f(4), _var(), torch.zeros(2), _mean(), _var(), 0.1, 5), ValueError,
            "fastgan: batch_norm_update_stats: num_batches_tracked must be a one-element torch.int64 tensor on cpu, "
            "got torch.float32 of shape (2,) on cpu"),
    ],
    "batch_norm_stats": [
        Bad("integer input", lambda: (_int(*X),), TypeError, INTEGER_INPUT),
        Bad("2-D input", lambda: (_f(3, 3),), ValueError,
            "fastgan: BatchNorm2d expects a 4-D input (N, C, H, W), got a 2-D tensor of shape (3, 3)"),
    ],
    "batch_norm_act_backward_reduce": [
        Bad("mean of 5 for 4 channels", lambda: (_f(*X), _f(*X), None, None, _mean(5), _var(), 1e-5, "relu", 0.0),
            ValueError, "fastgan: save_mean must be a 1-D tensor of 4 elements (one per channel), got shape (5,)"),
        Bad("integer grad_out", lambda: (_int(*X), _f(*X), None, None, _mean(), _var(), 1e-5, "relu", 0.0), TypeError,
            _float_tensor("grad_out")),
    ],
    "batch_norm_act_backward_elemt": [
        Bad("mean_dy of 3 for 4 channels", lambda: (_f(*X), _f(*X), None, None, _mean(), _var(), _mean(3), _mean(),
                                                    1e-5, "relu", 0.0), ValueError,
            "fastgan: mean_dy must be a 1-D tensor of 4 elements (one per channel), got shape (3,)"),
    ],
    "activation": [
        Bad("integer input", lambda: (_int(2, 3), "relu", 0.0), TypeError, INTEGER_INPUT),
        Bad("unknown activation", lambda: (_f(3), "swish", 0.0), ValueError,
            f"fastgan: unknown activation 'swish'; expected one of {ACTIVATION_NAMES}"),
        Bad("negative slope", lambda: (_f(3), "leaky_relu", -0.2), ValueError, _negative_slope("activation")),
        Bad("NaN slope", lambda: (_f(3), "leaky_relu", float("nan")), ValueError,
            _negative_slope("activation").replace("-0.2", "nan")),
    ],
    "activation_backward": [
        Bad("grad_out of another shape", lambda: (_f(3), _f(4), "tanh", 0.0), ValueError,
            _grad_out_shape("(3,)", "output", "(4,)")),
        Bad("negative slope", lambda: (_f(3), _f(3), "leaky_relu", -0.2), ValueError,
            _negative_slope("activation_backward")),
    ],
    "bias_act": [
        Bad("integer input", lambda: (_int(2, 8), _f(8), "relu", 0.0), TypeError, INTEGER_INPUT),
        Bad("bias of 7 for 8 features", lambda: (_f(2, 8), _f(7), "relu", 0.0), ValueError,
            "fastgan: bias_act adds a bias of shape (C,) along the last dimension of input (*, C), got bias of shape "
            "(7,) and input of shape (2, 8)"),
        Bad("negative slope", lambda: (_f(2, 8), _f(8), "leaky_relu", -0.2), ValueError, _negative_slope("bias_act")),
    ],
    "bias_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 8), _f(2, 7), "relu", 0.0), ValueError,
            _grad_out_shape("(2, 8)", "output", "(2, 7)")),
        Bad("negative slope", lambda: (_f(2, 8), _f(2, 8), "leaky_relu", -0.2), ValueError,
            _negative_slope("bias_act_backward")),
    ],
    "bce_with_logits": [
        Bad("integer input", lambda: (_int(4), None, 1.0, 1), TypeError, INTEGER_INPUT),
        Bad("target of another size", lambda: (_f(3), _f(4), 0.0, 1), ValueError,
            "Target size (torch.Size([4])) must be the same as input size (torch.Size([3]))"),
        Bad("reduction 3", lambda: (_f(4), None, 1.0, 3), ValueError, REDUCTION.format(3)),
    ],
    "logit_loss": [
        Bad("integer input", lambda: (_int(4), 1.0, "bce", 1), TypeError, INTEGER_INPUT),
        Bad("unknown kind", lambda: (_f(4), 1.0, "wgan", 1), ValueError,
            "fastgan: unknown logit loss 'wgan'; expected one of ['bce', 'hinge', 'linear', 'lsgan']"),
        Bad("reduction -1", lambda: (_f(4), 1.0, "hinge", -1), ValueError, REDUCTION.format(-1)),
    ],
    "upfirdn2d": [
        Bad("integer input", lambda: (_int(*X), _f(3, 3), *FIR0), TypeError, INTEGER_INPUT),
        Bad("3-D input", lambda: (_f(4, 3, 3), _f(3, 3), *FIR0), ValueError,
            "fastgan: upfirdn2d expects a 4-D input (N, C, H, W), got a 3-D tensor of shape (4, 3, 3)"),
        Bad("3-D filter", lambda: (_f(*X), _f(2, 2, 2), *FIR0), ValueError,
            "fastgan: upfirdn2d expects a filter of shape (taps,) (separable) or (height, width) with at least one "
            "tap, got shape (2, 2, 2)"),
        Bad("up 0", lambda: (_f(*X), _f(3, 3), [0, 1], *FIR0[1:]), ValueError,
            "fastgan: upfirdn2d: up must be 2 integers [x, y], each >= 1, got [0, 1]"),
        Bad("padding that leaves no output", lambda: (_f(*X), _f(3, 3), [1, 1], [1, 1], [-1, -1, 0, 0], False, 1.0),
            ValueError, "fastgan: upfirdn2d: input of shape (2, 4, 3, 3) with up [1, 1], padding [-1, -1, 0, 0] and a "
                        "filter of shape (3, 3) leaves no output: the upsampled, padded input must have at least as "
                        "many samples as the filter has taps along each axis"),
    ],
    "stylegan_bias_act": [
        Bad("unknown act", lambda: _sg(_f(*X), None, act="gelu"), ValueError,
            "fastgan: bias_act: unknown act 'gelu'; expected one of ['elu', 'linear', 'lrelu', 'relu', 'selu', "
            "'sigmoid', 'softplus', 'swish', 'tanh']"),
        Bad("bias of 5 for 4 channels", lambda: _sg(_f(*X), _f(5)), ValueError,
            "fastgan: bias_act: b must be a 1-D tensor of x.shape[1] = 4 elements, got shape (5,)"),
        Bad("dim 4 of a 4-D x", lambda: _sg(_f(*X), _f(4), dim=4), IndexError,
            "fastgan: bias_act: dim 4 is out of range for x of shape (2, 4, 3, 3)"),
        Bad("integer x", lambda: _sg(_int(*X), None), TypeError, _float_tensor("x")),
    ],
    "stylegan_bias_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 4, 3, 2), *_sg(_f(*X), None)), ValueError,
            _grad_out_shape("(2, 4, 3, 2)", "x", "(2, 4, 3, 3)")),
    ],
    "filtered_lrelu_act": [
        Bad("integer z", lambda: (_int(*X), 1.0, 0.2, -1.0), TypeError, _float_tensor("z")),
    ],
    "filtered_lrelu_act_backward": [
        Bad("a sign record of another shape", lambda: (_f(*X), torch.zeros(2, 4, 3, 2, dtype=torch.uint8), 1.0, 0.2),
            ValueError, "fastgan: filtered_lrelu_act_backward: sign must be the uint8 record of a (2, 4, 3, 3) signal, "
                        "of shape (2, 4, 3, 1), got torch.uint8 of shape (2, 4, 3, 2)"),
        Bad("a float sign record", lambda: (_f(*X), torch.zeros(2, 4, 3, 1), 1.0, 0.2), ValueError,
            "fastgan: filtered_lrelu_act_backward: sign must be the uint8 record of a (2, 4, 3, 3) signal, of shape "
            "(2, 4, 3, 1), got torch.float32 of shape (2, 4, 3, 1)"),
    ],
    "conv_bn_act": [
        Bad("input channels", lambda: (_f(2, 5, 8, 8), _f(4, 3, 3, 3), None, *CONV, *_bn(4), True, 0.1, 1e-5, "relu",
                                       0.0), ValueError,
            "fastgan: Conv2d+BatchNorm2d+ReLU expects input with 3 channels (from its weight of shape (4, 3, 3, 3)), "
            "got 5 channels in input of shape (2, 5, 8, 8)"),
        Bad("BatchNorm of 5 for 4 channels", lambda: (_f(2, 3, 8, 8), _f(4, 3, 3, 3), None, *CONV, *_bn(5), True, 0.1,
                                                      1e-5, "relu", 0.0), ValueError,
            "fastgan: Conv2d+BatchNorm2d+ReLU: BatchNorm weight has shape (5,) but the input has 4 channels (input "
            "shape (2, 4, 8, 8))"),
        Bad("unknown activation", lambda: (_f(2, 3, 8, 8), _f(4, 3, 3, 3), None, *CONV, *_bn(4), True, 0.1, 1e-5,
                                           "gelu", 0.0), ValueError,
            f"fastgan: unknown activation 'gelu'; expected one of {ACTIVATION_NAMES}"),
    ],
    "conv_bn_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 4, 8, 7), _f(2, 3, 8, 8), _f(4, 3, 3, 3), _f(2, 4, 8, 8), None,
                                                  None, _mean(), _var(), *CONV, True, 1e-5, "relu", 0.0,
                                                  [True, True, False]), ValueError,
            _grad_out_shape("(2, 4, 8, 7)", "input", "(2, 4, 8, 8)")),
    ],
    "conv_act": [
        Bad("kernel larger than the input", lambda: (_f(2, 3, 2, 2), _f(4, 3, 5, 5), None, (1, 1), (0, 0), (1, 1),
                                                     False, (0, 0), 1, "relu", 0.0), ValueError,
            "fastgan: Conv2d+ReLU: input height 2 (+ 2*padding 0) is smaller than the kernel's extent 5; input shape "
            "(2, 3, 2, 2)"),
        Bad("negative slope", lambda: (_f(2, 3, 8, 8), _f(4, 3, 3, 3), None, *CONV, "leaky_relu", -0.2), ValueError,
            _negative_slope("Conv2d+LeakyReLU")),
        Bad("transposed input channels", lambda: (_f(2, 3, 4, 4), _f(4, 3, 4, 4), None, *CONV_T, "tanh", 0.0),
            ValueError, "fastgan: ConvTranspose2d+Tanh expects input with 4 channels (from its weight of shape "
                        "(4, 3, 4, 4)), got 3 channels in input of shape (2, 3, 4, 4)"),
    ],
    "conv_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 4, 8, 7), _f(2, 3, 8, 8), _f(4, 3, 3, 3), _f(2, 4, 8, 8),
                                                  *CONV, "relu", 0.0, [True, True, True]), ValueError,
            _grad_out_shape("(2, 4, 8, 7)", "output", "(2, 4, 8, 8)")),
        Bad("negative slope", lambda: (_f(2, 4, 8, 8), _f(2, 3, 8, 8), _f(4, 3, 3, 3), _f(2, 4, 8, 8), *CONV,
                                       "leaky_relu", -0.2, [True, True, True]), ValueError,
            _negative_slope("activation_backward")),
    ],
    "linear_act": [
        Bad("input features", lambda: (_f(2, 5), _f(7, 6), None, "relu", 0.0), ValueError,
            "fastgan: Linear+ReLU expects input with 6 features in its last dimension (from its weight of shape "
            "(7, 6)), got input of shape (2, 5)"),
        Bad("bias of 6 for 7 features", lambda: (_f(2, 6), _f(7, 6), _f(6), "relu", 0.0), ValueError,
            "fastgan: Linear+ReLU: bias has shape (6,) but the weight has 7 output features"),
        Bad("integer input", lambda: (_int(2, 6), _f(7, 6), None, "relu", 0.0), TypeError, INTEGER_INPUT),
    ],
    "linear_act_backward": [
        Bad("grad_out of another shape", lambda: (_f(2, 6), _f(2, 6), _f(7, 6), _f(2, 7), "relu", 0.0,
                                                  [True, True, True]), ValueError,
            _grad_out_shape("(2, 6)", "output", "(2, 7)")),
        Bad("negative slope", lambda: (_f(2, 7), _f(2, 6), _f(7, 6), _f(2, 7), "leaky_relu", -0.2, [True, True, True]),
            ValueError, _negative_slope("bias_act_backward")),
    ],
    "filtered_lrelu": [
        Bad("integer x", lambda: (_int(*X), _f(3), _f(3), *FL), TypeError, _float_tensor("x")),
        Bad("3-D fu", lambda: (_f(*X), _f(2, 2, 2), _f(3), *FL), ValueError,
            "fastgan: filtered_lrelu expects fu of shape (taps,) (separable) or (height, width) with at least one tap, "
            "got shape (2, 2, 2)"),
        Bad("bias of 5 for 4 channels", lambda: (_f(*X), _f(3), _f(3), _f(5), *FL[1:]), ValueError,
            "fastgan: filtered_lrelu: b must be a 1-D tensor of x.shape[1] = 4 elements, got shape (5,)"),
        Bad("up 0", lambda: (_f(*X), _f(3), _f(3), None, 0, *FL[2:]), ValueError,
            "fastgan: filtered_lrelu: up and down must be integers >= 1, got up 0 and down 1"),
        Bad("padding that leaves no output", lambda: (_f(*X), _f(3), _f(3), None, 1, 1, [-1, -1, 0, 0], *FL[4:]),
            ValueError, "fastgan: filtered_lrelu: x of shape (2, 4, 3, 3) with up 1, down 1, padding [-1, -1, 0, 0], "
                        "fu of shape (3,) and fd of shape (3,) leaves no output"),
    ],
}


def _op(name, samples, reference, differentiable=False, emulated=True, layouts=LAYOUTS):
    return OpInfo(name, samples, reference, BAD[name], layouts, differentiable, emulated)


_FOUR_D = LAYOUTS
_ROWS = ("contiguous", "strided")  # (rows, features) inputs: no channels_last
OPS = {op.name: op for op in [
    _op("batch_norm_act", samples_batch_norm_act, ref_batch_norm_act, differentiable=True),
    _op("batch_norm_act_backward", samples_batch_norm_act_backward, ref_batch_norm_act_backward),
    _op("batch_norm_update_stats", samples_batch_norm_update_stats, ref_batch_norm_update_stats,
        layouts=("contiguous",)),
    _op("batch_norm_stats", samples_batch_norm_stats, reference.batch_norm_stats),
    _op("batch_norm_act_backward_reduce", samples_batch_norm_act_backward_reduce,
        reference.batch_norm_act_backward_reduce),
    _op("batch_norm_act_backward_elemt", samples_batch_norm_act_backward_elemt,
        reference.batch_norm_act_backward_elemt),
    _op("activation", samples_activation, reference.activation, differentiable=True),
    _op("activation_backward", samples_activation_backward, reference.activation_backward),
    _op("bias_act", samples_bias_act, reference.bias_act, layouts=_ROWS),
    _op("bias_act_backward", samples_bias_act_backward, reference.bias_act_backward, layouts=_ROWS),
    _op("bce_with_logits", samples_bce_with_logits, ref_bce_with_logits, differentiable=True),
    _op("logit_loss", samples_logit_loss, ref_logit_loss, differentiable=True),
    _op("upfirdn2d", samples_upfirdn2d, reference.upfirdn2d, differentiable=True),
    _op("stylegan_bias_act", samples_stylegan_bias_act, ref_stylegan_bias_act, differentiable=True),
    _op("stylegan_bias_act_backward", samples_stylegan_bias_act_backward, ref_stylegan_bias_act_backward),
    _op("filtered_lrelu_act", samples_filtered_lrelu_act, ref_filtered_lrelu_act),
    _op("filtered_lrelu_act_backward", samples_filtered_lrelu_act_backward, ref_filtered_lrelu_act_backward),
    _op("conv_bn_act", samples_conv_bn_act, ref_conv_bn_act, differentiable=True, emulated=False),
    _op("conv_bn_act_backward", samples_conv_bn_act_backward, ref_conv_bn_act_backward, emulated=False),
    _op("conv_act", samples_conv_act, ref_conv_act, differentiable=True, emulated=False),
    _op("conv_act_backward", samples_conv_act_backward, ref_conv_act_backward, emulated=False),
    _op("linear_act", samples_linear_act, ref_linear_act, differentiable=True, emulated=False, layouts=_ROWS),
    _op("linear_act_backward", samples_linear_act_backward, ref_linear_act_backward, emulated=False, layouts=_ROWS),
    _op("filtered_lrelu", samples_filtered_lrelu, ref_filtered_lrelu, differentiable=True, emulated=False),
]}
