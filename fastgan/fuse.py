"""Running stock layer sequences through the fused ops without changing the modules.

FusedSequential is an nn.Sequential that keeps its children (so state_dict keys and values
are exactly those of the stock model) and, at forward, runs each recognised run of children
as one fused call:
    Conv2d | ConvTranspose2d  ->  BatchNorm2d | SyncBatchNorm  ->  ReLU | LeakyReLU | Tanh | Sigmoid
    Conv2d | ConvTranspose2d  ->  ReLU | LeakyReLU (slope >= 0) | Tanh | Sigmoid
    Linear                    ->  ReLU | LeakyReLU (slope >= 0) | Tanh | Sigmoid
    Linear                    ->  BatchNorm1d  ->  ReLU | LeakyReLU | Tanh | Sigmoid   (2-D input)
    BatchNorm2d | BatchNorm1d ->  ReLU | LeakyReLU | Tanh | Sigmoid
    Conv2d | ConvTranspose2d  ->  InstanceNorm2d  ->  ReLU | LeakyReLU | Tanh | Sigmoid   (any padding mode)
    InstanceNorm2d            ->  ReLU | LeakyReLU | Tanh | Sigmoid
and each of the runs with a norm without the activation after it (the identity). The same
chains in a forward() that calls its layers one by one are fused by tracing it (fuse_graph.py).
A SyncBatchNorm2d (fastgan.nn.convert_sync_batchnorm) or torch's nn.SyncBatchNorm
synchronises its statistics over its process group through the fused kernels whenever
torch's own would (training, more than one rank); otherwise it is an ordinary BatchNorm2d.
Everything else runs as the stock module it is."""
import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import _checks, reference
from . import functional as FF
from ._backend import _C, fast_path
from .activations import activate, activation_of
from .sync_batch_norm import SYNC_BATCH_NORMS, needs_sync, sync_batch_norm_act

_BATCH_NORMS = (nn.BatchNorm2d, *SYNC_BATCH_NORMS)

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _layer_type(module):
    """The stock class of a layer: its own, or for a weight parametrization
    (torch.nn.utils.parametrizations.spectral_norm, weight_norm) the class it was made from.
    A parametrized layer fuses: reading its weight computes the parametrization as the stock
    forward does, once per call (spectral norm's power iteration in training included)."""
    cls = type(module)
    if parametrize.is_parametrized(module) and cls.__name__ == f"Parametrized{cls.__bases__[0].__name__}":
        return cls.__bases__[0]
    return cls


def unhooked(module):
    """A module with no forward hook or pre-hook: one a fused chain may take past its start."""
    return not module._forward_hooks and not module._forward_pre_hooks


def pre_hooks_only(module):
    """A module whose hooks a fused chain starting at it honours: forward pre-hooks taking the
    positional input (old-style spectral_norm's computes the weight in one), which the chain runs
    on its input first (run_pre_hooks). A forward hook needs the module's own output, which a
    fused chain does not produce, so a module with one runs stock."""
    return not module._forward_hooks and not module._forward_pre_hooks_with_kwargs


def run_pre_hooks(module, x):
    """x through module's forward pre-hooks, as nn.Module's call runs them: a hook may return a
    replacement input (a tensor, or a one-tuple)."""
    for hook in tuple(module._forward_pre_hooks.values()):
        result = hook(module, (x,))
        if result is not None:
            x = result[0] if isinstance(result, tuple) else result
    return x


def _fusable_conv(module):
    return (_layer_type(module) in _CONVS and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and pre_hooks_only(module))


def _conv_before_instance_norm(module):
    """A conv that can open a conv -> InstanceNorm2d chain: it runs as its own forward (conv_in_act),
    so any padding mode and string padding are fine."""
    return _layer_type(module) in _CONVS and pre_hooks_only(module)


def _fusable_linear(module):
    return _layer_type(module) is nn.Linear and pre_hooks_only(module)


def _norm_after(modules, i, norm_types):
    return i < len(modules) and type(modules[i]) in norm_types and unhooked(modules[i])


def _activation_module(modules, i):
    """(name, slope) of modules[i] if it is an activation module fuse can run, else None."""
    return activation_of(modules[i]) if i < len(modules) and unhooked(modules[i]) else None


def _activation_after(modules, i):
    """(name, slope) of modules[i] if it is an activation fuse can run, else the identity's."""
    found = _activation_module(modules, i)
    return found if found is not None else ("identity", 0.0)


def plan(modules):
    """Split a list of modules into segments: (length, kind, activation, slope). A BatchNorm
    takes the activation after it into its segment, or the identity when none follows."""
    segments, i = [], 0
    while i < len(modules):
        m = modules[i]
        if _fusable_conv(m) and _norm_after(modules, i + 1, _BATCH_NORMS):
            name, slope = _activation_after(modules, i + 2)
            segments.append((2 + (name != "identity"), "conv_bn_act", name, slope))
            i += segments[-1][0]
            continue
        if _conv_before_instance_norm(m) and _norm_after(modules, i + 1, (nn.InstanceNorm2d,)):
            name, slope = _activation_after(modules, i + 2)
            segments.append((2 + (name != "identity"), "conv_in_act", name, slope))
            i += segments[-1][0]
            continue
        if _fusable_conv(m) and _activation_module(modules, i + 1) is not None:
            name, slope = _activation_module(modules, i + 1)
            if not (name == "leaky_relu" and slope < 0):  # the backward reads the sign from the output
                segments.append((2, "conv_act", name, slope))
                i += 2
                continue
        if _fusable_linear(m) and _norm_after(modules, i + 1, (nn.BatchNorm1d,)):
            name, slope = _activation_after(modules, i + 2)
            segments.append((2 + (name != "identity"), "linear_bn_act", name, slope))
            i += segments[-1][0]
            continue
        if _fusable_linear(m) and _activation_module(modules, i + 1) is not None:
            name, slope = _activation_module(modules, i + 1)
            if not (name == "leaky_relu" and slope < 0):
                segments.append((2, "linear_act", name, slope))
                i += 2
                continue
        if type(m) in (nn.BatchNorm2d, nn.BatchNorm1d) and unhooked(m):
            name, slope = _activation_after(modules, i + 1)
            segments.append((1 + (name != "identity"), "bn_act", name, slope))
            i += segments[-1][0]
            continue
        if type(m) is nn.InstanceNorm2d and unhooked(m):
            name, slope = _activation_after(modules, i + 1)
            segments.append((1 + (name != "identity"), "in_act", name, slope))
            i += segments[-1][0]
            continue
        segments.append((1, "module", None, 0.0))
        i += 1
    return segments


def _conv_args(conv):
    transposed = isinstance(conv, nn.ConvTranspose2d)
    return (conv.stride, conv.padding, conv.dilation, transposed, conv.output_padding if transposed else (0, 0),
            conv.groups)


def conv_bn_act(conv, bn, activation, slope, x):
    """x through conv -> bn -> the activation (name, slope) as one fused layer, reading the
    modules' current parameters, buffers and mode; a SyncBatchNorm that must synchronise takes
    the stock convolution and fastgan's synchronised BatchNorm. The segment runners here, one per
    kind of plan() segment, are what FusedSequential and the traced forward call."""
    if type(bn) in SYNC_BATCH_NORMS and needs_sync(bn):
        transposed = isinstance(conv, nn.ConvTranspose2d)
        layer = _checks.layer_name(_checks.conv_module(transposed), "BatchNorm2d", activation=activation)
        _checks.check_conv(x, conv.weight, transposed=transposed, padding=conv.padding, dilation=conv.dilation,
                           groups=conv.groups, layer=layer)
        y = reference.conv(x, conv.weight, conv.bias, *_conv_args(conv))
        return sync_batch_norm_act(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.momentum, bn.eps,
                                   activation, slope, bn.num_batches_tracked, bn.process_group, layer)
    return FF.conv_bn_act(x, conv.weight, conv.bias, *_conv_args(conv), bn.weight, bn.bias, bn.running_mean,
                          bn.running_var, bn.num_batches_tracked, bn.training, bn.momentum, bn.eps, activation, slope)


def conv_act(conv, activation, slope, x):
    """x through conv -> the activation (name, slope) as one fused layer."""
    return FF.conv_act(x, conv.weight, conv.bias, *_conv_args(conv), activation, slope)


def linear_act(linear, activation, slope, x):
    """x through linear -> the activation (name, slope) as one fused layer."""
    return FF.linear_act(x, linear.weight, linear.bias, activation, slope)


def _stock_act(last, y):
    """y through the activation `last`: a module, a (name, slope) pair (a functional activation
    of a traced forward, fuse_graph.py), or None for none."""
    if last is None:
        return y
    return activate(y, *last) if isinstance(last, tuple) else last(y)


def bn_act(bn, last, activation, slope, x):
    """BatchNorm2d | BatchNorm1d, then the activation (or none), in the fused BatchNorm kernels;
    a BatchNorm1d's (N, C) or (N, C, L) input viewed as (N, C, 1, 1) or (N, C, L, 1). Input of
    another rank, and a BatchNorm1d's training batch of one value per channel, run the stock
    modules (stock's own errors)."""
    if type(bn) is nn.BatchNorm2d:
        view = x if x.dim() == 4 else None
    else:
        view = x.unsqueeze(-1) if x.dim() == 3 else x.view(x.size(0), x.size(1), 1, 1) if x.dim() == 2 else None
        if view is not None and view.size(0) * view.size(2) == 1 and (bn.training or bn.running_mean is None):
            view = None
    if view is None:
        return _stock_act(last, bn(x))
    out = FF.batch_norm_act(view, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, bn.momentum,
                            bn.eps, activation, slope, bn.num_batches_tracked)
    return out.view(x.shape)


def in_act(norm, last, activation, slope, x):
    """InstanceNorm2d, then the activation (or none), in the fused BatchNorm kernels
    (functional.instance_norm_act); an unbatched (C, H, W) input as a batch of one. Input
    that InstanceNorm2d would warn about or refuse (another rank, a channel count other than
    num_features, a plane of one value in training) runs the stock modules."""
    use_input_stats = norm.training or not norm.track_running_stats
    if (x.dim() not in (3, 4) or x.size(-3) != norm.num_features
            or (use_input_stats and x.shape[-2] * x.shape[-1] == 1)):
        return _stock_act(last, norm(x))
    out = FF.instance_norm_act(x if x.dim() == 4 else x.unsqueeze(0), norm.running_mean, norm.running_var,
                               norm.weight, norm.bias, use_input_stats,
                               norm.momentum if norm.momentum is not None else 0.0, norm.eps, activation, slope)
    return out if x.dim() == 4 else out.squeeze(0)


def conv_in_act(conv, norm, last, activation, slope, x):
    """Conv2d / ConvTranspose2d -> InstanceNorm2d -> activation (or none): the convolution as the
    conv's own forward computes it (its padding mode, parametrized weight; no hooks: the chain ran
    its pre-hooks), then the instance norm and activation in the fused BatchNorm kernels (in_act),
    as linear_bn_act runs its product through torch."""
    return in_act(norm, last, activation, slope, conv.forward(x))


def linear_bn_act(linear, bn, last, activation, slope, x):
    """Linear -> BatchNorm1d -> activation: the product through torch (as conv_bn_act's
    convolution), then BatchNorm1d's statistics, normalisation and activation in the fused
    BatchNorm kernels on the (N, C) output viewed as (N, C, 1, 1), which BatchNorm1d's
    arithmetic is. Input that is not 2-D (BatchNorm1d would normalise over dim 1 of (N, L, C)),
    and a training batch of one (stock's own error), run the stock modules."""
    y = torch.nn.functional.linear(x, linear.weight, linear.bias)
    if y.dim() != 2:
        return _stock_act(last, bn(y))
    return bn_act(bn, last, activation, slope, y)


def run_chain(kind, modules, last, activation, x):
    """One fused segment through the general path: a Sequential's under torch.compile, a traced
    forward's chain always. modules: the conv/linear/norm modules (the activation module too,
    unused); last: the activation module, a (name, slope) pair for a functional one, or None.
    The first module's forward pre-hooks run on x first (pre_hooks_only)."""
    slope = _slope(last)
    if modules[0]._forward_pre_hooks:
        x = run_pre_hooks(modules[0], x)
    if kind == "conv_bn_act":
        return conv_bn_act(modules[0], modules[1], activation, slope, x)
    if kind == "conv_act":
        return conv_act(modules[0], activation, slope, x)
    if kind == "linear_act":
        return linear_act(modules[0], activation, slope, x)
    if kind == "linear_bn_act":
        return linear_bn_act(modules[0], modules[1], last, activation, slope, x)
    if kind == "in_act":
        return in_act(modules[0], last, activation, slope, x)
    if kind == "conv_in_act":
        return conv_in_act(modules[0], modules[1], last, activation, slope, x)
    return bn_act(modules[0], last, activation, slope, x)


def _runner(kind, modules, activation):
    """One segment of a plan as a callable. The fused ones call _C's entry point straight
    away when the fused kernels serve the input (the eager hot path: no Python between the
    module call and the op) and go through fastgan.functional otherwise.

    The hot path reads parameters and buffers from the modules' _parameters and _buffers
    dicts: nn.Module.__getattr__, which `conv.weight` goes through, costs about 0.9 us a call
    on recent torch, more than the rest of the Python a layer runs. A name missing from the
    dicts (a parametrization registered after the plan was made turns `weight` into a
    property) sends the call down the general path, which reads the attributes."""
    if kind == "module":
        return modules[0]
    run = _fused_runner(kind, modules, activation)
    first = modules[0]
    if first._forward_pre_hooks:  # old-style spectral_norm's weight, say (pre_hooks_only)
        return lambda x: run(run_pre_hooks(first, x))
    return run


def _fused_runner(kind, modules, activation):
    last = modules[-1] if activation != "identity" else None
    if kind == "linear_bn_act":
        return lambda x: linear_bn_act(modules[0], modules[1], last, activation, _slope(last), x)
    if kind == "bn_act":
        return lambda x: bn_act(modules[0], last, activation, _slope(last), x)
    if kind == "in_act":
        return lambda x: in_act(modules[0], last, activation, _slope(last), x)
    if kind == "conv_in_act":
        return lambda x: conv_in_act(modules[0], modules[1], last, activation, _slope(last), x)
    if kind == "linear_act":
        linear, last = modules
        lp = linear._parameters

        def run_linear_act(x):
            if fast_path(x):
                try:
                    weight, bias = lp["weight"], lp["bias"]
                except KeyError:
                    return linear_act(linear, activation, _slope(last), x)
                return _C.linear_act(x, weight, bias, activation, _slope(last))
            return linear_act(linear, activation, _slope(last), x)
        return run_linear_act
    conv, last = modules[0], modules[-1]
    cp = conv._parameters
    stride, padding, dilation, transposed, output_padding, groups = _conv_args(conv)
    if kind == "conv_act":
        def run_conv_act(x):
            if fast_path(x):
                try:
                    weight, bias = cp["weight"], cp["bias"]
                except KeyError:
                    return conv_act(conv, activation, _slope(last), x)
                return _C.conv_act(x, weight, bias, conv.stride, conv.padding, conv.dilation, transposed,
                                   output_padding, conv.groups, activation, _slope(last))
            return conv_act(conv, activation, _slope(last), x)
        return run_conv_act
    bn = modules[1]
    bp, bb = bn._parameters, bn._buffers
    sync = type(bn) in SYNC_BATCH_NORMS

    def run_conv_bn_act(x):
        if fast_path(x) and not (sync and needs_sync(bn)):
            try:
                weight, conv_bias, bn_weight, bn_bias = cp["weight"], cp["bias"], bp["weight"], bp["bias"]
                running_mean, running_var, tracked = bb["running_mean"], bb["running_var"], bb["num_batches_tracked"]
            except KeyError:
                return conv_bn_act(conv, bn, activation, _slope(last), x)
            return _C.conv_bn_act(x, weight, conv_bias, conv.stride, conv.padding, conv.dilation, transposed,
                                  output_padding, conv.groups, bn_weight, bn_bias, running_mean, running_var, tracked,
                                  bn.training, bn.momentum, bn.eps, activation, _slope(last))
        return conv_bn_act(conv, bn, activation, _slope(last), x)
    return run_conv_bn_act


class FusedSequential(nn.Sequential):
    """nn.Sequential whose conv/BatchNorm/activation runs execute as fused ops.

    The plan (which children fuse) is made on the first call and kept while the children
    stay the same objects; attributes (training, momentum, a LeakyReLU's slope) are read
    on every call. Forward hooks registered on a child after the first call are not seen
    by the fused segments: register them before, or call fastgan.unfuse()."""

    def _runners(self, modules):
        cached = self.__dict__.get("_fastgan_plan")
        if cached is None or cached[0] != modules:  # modules compare by identity
            runners, i = [], 0
            for length, kind, activation, _ in plan(modules):
                runners.append(_runner(kind, modules[i:i + length], activation))
                i += length
            cached = (modules, runners)
            self.__dict__["_fastgan_plan"] = cached
        return cached[1]

    def forward(self, input):
        modules = tuple(self._modules.values())
        if not torch.compiler.is_compiling():
            for run in self._runners(modules):
                input = run(input)
            return input
        i = 0  # traced by torch.compile: the plan is made at trace time, no cache to guard on
        for length, kind, activation, _ in plan(modules):
            segment = modules[i:i + length]
            if kind == "module":
                input = segment[0](input)
            else:
                input = run_chain(kind, segment, segment[-1] if activation != "identity" else None, activation, input)
            i += length
        return input

    def __getstate__(self):
        state = super().__getstate__().copy()
        state.pop("_fastgan_plan", None)  # made again on the next call
        return state


def _slope(activation_module):
    """A LeakyReLU's slope, read at each call; a (name, slope) pair's slope; else 0."""
    if isinstance(activation_module, tuple):
        return activation_module[1]
    return activation_module.negative_slope if type(activation_module) is nn.LeakyReLU else 0.0


def fuse(module: nn.Module, inplace: bool = False, report: bool = False) -> nn.Module:
    """A module computing the same function with fused ops, its state_dict keys and values
    unchanged.

    Every plain nn.Sequential holding a fusable run becomes a FusedSequential with the very same
    children; every other module's forward is traced (torch.fx) and its conv/linear -> norm ->
    activation chains run fused, on the same modules (fuse_graph.py). A forward that cannot be
    traced keeps its own and its children are traced instead; fuse warns once, naming it, when
    it calls conv, linear or norm layers of its own, which then stay stock.

    Args:
        module: the model (or any module).
        inplace: change module itself rather than a deep copy of it.
        report: print what was fused and what stays stock, and why (fuse_report's lines).

    Returns:
        The fused module (module itself when inplace).
    """
    from .fuse_graph import fuse_traced

    if not inplace:
        module = copy.deepcopy(module)
    for m in [module, *module.modules()]:
        if type(m) is nn.Sequential and any(kind != "module" for _, kind, _, _ in plan(list(m._modules.values()))):
            m.__class__ = FusedSequential
    notes = []
    fuse_traced(module, notes)
    module.__dict__["_fastgan_notes"] = notes
    kept = [where for where, _, warn in notes if warn]
    if kept:
        warnings.warn(f"fastgan.fuse: the forward of {', '.join(kept)} could not be traced (torch.fx), so the layers "
                      "it calls directly stay stock; its children were fused where they could be. "
                      "fastgan.fuse_report(model) says what runs fused", stacklevel=2)
    if report:
        print("\n".join(fuse_report(module)))
    return module


_STOCK_REASONS = [
    (lambda m: bool(m._forward_hooks), "it has a forward hook, which needs its own output"),
    (lambda m: bool(m._forward_pre_hooks_with_kwargs), "it has a forward pre-hook taking keyword arguments"),
    (lambda m: bool(m._forward_pre_hooks) and not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)),
     "it has a forward pre-hook (only a chain's conv or linear layer runs its pre-hooks)"),
    (lambda m: getattr(m, "padding_mode", "zeros") != "zeros" or isinstance(getattr(m, "padding", 0), str),
     "its padding is not numeric zero padding"),
]


def fuse_report(module: nn.Module) -> list:
    """What fuse() made of module, one line each: the runs and chains that run fused, the
    forwards that could not be traced, and the conv, linear and norm layers that stay stock,
    with the reason where fuse knows it.

    Args:
        module: a module fuse() returned.

    Returns:
        A list of strings.
    """
    from .fuse_graph import _LAYERS, traced_chains

    lines, covered = [], set()
    names = {id(m): n for n, m in module.named_modules()}
    for path, m in module.named_modules():
        if isinstance(m, FusedSequential):
            children, i = list(m._modules.items()), 0
            for length, kind, _, _ in plan([c for _, c in children]):
                run = children[i:i + length]
                if kind != "module":
                    covered.update(id(c) for _, c in run)
                    where = path or "Sequential"  # the model itself has no path: its class, as fuse_graph names it
                    lines.append(f"{where}: fused: {' -> '.join(type(c).__name__ for _, c in run)} ({kind})")
                i += length
        for _, targets in traced_chains(m):
            covered.update(id(m.get_submodule(t)) for t in targets)
    for where, what, _ in module.__dict__.get("_fastgan_notes", []):
        lines.append(f"{where}: {what}")
    for m in module.modules():
        if isinstance(m, _LAYERS) and id(m) not in covered:
            reason = next((why for test, why in _STOCK_REASONS if test(m)),
                          "no norm or activation fuse runs directly after it in a traced or Sequential forward")
            where = f"{names[id(m)]} ({type(m).__name__})" if names[id(m)] else type(m).__name__
            lines.append(f"{where}: stock: {reason}")
    return lines


def unfuse(module: nn.Module, inplace: bool = False) -> nn.Module:
    """The inverse of fuse(): every FusedSequential becomes a plain nn.Sequential again and every
    traced forward is removed, so each module runs its class's own forward."""
    from .fuse_graph import unfuse_traced

    if not inplace:
        module = copy.deepcopy(module)
    for m in [module, *module.modules()]:
        if isinstance(m, FusedSequential):
            m.__class__ = nn.Sequential
            m.__dict__.pop("_fastgan_plan", None)
        unfuse_traced(m)
    module.__dict__.pop("_fastgan_notes", None)
    return module
