"""patch() / unpatch(): run a loaded NVlabs (stylegan2-ada-pytorch, stylegan3) or rosinality
(stylegan2-pytorch and the projects that reuse its `op` package) checkout on fastgan's ops,
without editing it. Their code calls its ops through module attributes (`bias_act.bias_act(...)`,
`upfirdn2d.upsample2d(...)`), or through names bound by `from op import upfirdn2d`; patch() sets
those attributes, and every other name in a loaded module bound to the same function, to
fastgan's, and records each so that unpatch() puts the originals back."""
import sys
from typing import Dict, List, Tuple

# The entry points fastgan replaces, per module of each codebase: {module: {attribute: (fastgan
# module, fastgan attribute)}}. Functions only: their classes (rosinality's FusedLeakyReLU) call
# these functions, so instances made before patch() follow too.
_NVLABS_UPFIRDN2D = {name: ("upfirdn2d", name) for name in
                     ("setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d")}
_GRADFIX = {"conv2d": ("conv2d_gradfix", "conv2d"), "conv_transpose2d": ("conv2d_gradfix", "conv_transpose2d")}
TARGETS = {
    "torch_utils.ops.bias_act": {"bias_act": ("bias_act", "bias_act")},
    "torch_utils.ops.upfirdn2d": _NVLABS_UPFIRDN2D,
    "torch_utils.ops.conv2d_gradfix": _GRADFIX,
    "torch_utils.ops.grid_sample_gradfix": {"grid_sample": ("grid_sample_gradfix", "grid_sample")},
    "torch_utils.ops.filtered_lrelu": {"filtered_lrelu": ("filtered_lrelu", "filtered_lrelu")},
    "op.fused_act": {"fused_leaky_relu": ("rosinality", "fused_leaky_relu")},
    "op.upfirdn2d": {"upfirdn2d": ("rosinality", "upfirdn2d")},
    "op.conv2d_gradfix": _GRADFIX,
}

# (module, attribute, original) for everything patched, in order; unpatch() walks it backwards.
_records: List[Tuple[object, str, object]] = []


def _replacement(where: Tuple[str, str]):
    import importlib

    module, attribute = where
    return getattr(importlib.import_module(f"fastgan.stylegan.{module}"), attribute)


def patch(verbose: bool = True) -> List[str]:
    """Point the loaded codebases' op entry points at fastgan's.

    Call it after importing the checkout's code (e.g. `import training.networks`, or `from
    model import Generator`) and before building or running its models; calling it again patches
    only what is new (a module imported since).

    Args:
        verbose: print one line to stderr naming what was patched.
    Returns:
        The names patched by this call, "module.attribute".
    Raises:
        RuntimeError: none of NVlabs' torch_utils.ops or rosinality's op modules is loaded.
    """
    loaded = [name for name in TARGETS if name in sys.modules]
    if not loaded:
        raise RuntimeError("fastgan.stylegan.patch: found no StyleGAN ops to patch: neither NVlabs' torch_utils.ops "
                           "(stylegan2-ada-pytorch, stylegan3) nor rosinality's op package is imported in this "
                           "process; import the checkout's code first (e.g. `import training.networks` or `from "
                           "model import Generator`)")
    originals: Dict[int, object] = {}  # id(original) -> fastgan's function
    patched = []
    for name in loaded:
        module = sys.modules[name]
        for attribute, where in TARGETS[name].items():
            new = _replacement(where)
            old = getattr(module, attribute, None)
            if old is None or old is new:
                continue  # not in this version of the codebase, or patched already
            originals[id(old)] = new
            _records.append((module, attribute, old))
            setattr(module, attribute, new)
            patched.append(f"{name}.{attribute}")
    # Names bound to the same functions elsewhere (`from op import upfirdn2d` in model.py, the
    # op package's own re-exports).
    if originals:
        for mod_name, module in list(sys.modules.items()):
            if module is None or mod_name.startswith(("fastgan", "torch")):
                continue
            try:
                names = list(vars(module).items())
            except TypeError:  # an entry of sys.modules that is not a module and has no __dict__
                continue
            for attribute, value in names:
                new = originals.get(id(value))
                if new is not None and callable(value):
                    _records.append((module, attribute, value))
                    setattr(module, attribute, new)
                    patched.append(f"{mod_name}.{attribute}")
    if verbose:
        what = ", ".join(patched) if patched else "nothing new (already patched)"
        print(f"fastgan.stylegan.patch: now on fastgan's ops: {what}", file=sys.stderr)
    return patched


def unpatch(verbose: bool = True) -> List[str]:
    """Restore every entry point patch() replaced; safe to call when nothing is patched.

    Returns:
        The names restored, "module.attribute".
    """
    restored = []
    while _records:
        module, attribute, original = _records.pop()
        setattr(module, attribute, original)
        restored.append(f"{module.__name__}.{attribute}")
    if verbose and restored:
        print(f"fastgan.stylegan.unpatch: restored {', '.join(reversed(restored))}", file=sys.stderr)
    return restored[::-1]
