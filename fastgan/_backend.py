"""Which path runs the ops: the compiled kernels in fastgan._C ("fused") or the stock-torch
reference ("reference"). Decided once at import; FASTGAN_BACKEND=reference forces the
reference path. Falling back is announced by one warning that says why and how to fix it."""
import contextlib
import os
import warnings

import torch

BUILD_HINT = ("build it with `pip install --no-build-isolation .` in the fastgan source folder "
              "(see `python -m fastgan info`)")

import importlib.util

if importlib.util.find_spec("fastgan._C") is None:
    _C = None
    LOAD_ERROR = "it is not built (the package was installed without it, e.g. with FASTGAN_NO_EXT=1)"
else:
    try:
        from fastgan import _C  # noqa: F401  (importing registers torch.ops.fastgan)
        LOAD_ERROR = None
    except ImportError as exc:  # typically an undefined symbol: built against another torch
        _C = None
        LOAD_ERROR = f"{exc} (was it built against another torch? rebuild it)"

COMPILED = _C is not None


def _has_kernel(device_type: str) -> bool:
    if not COMPILED:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::batch_norm_act", key)


# Read once: torch.compile then sees plain Python constants.
KERNELS = {"cpu": _has_kernel("cpu"), "cuda": _has_kernel("cuda")}

_requested = os.environ.get("FASTGAN_BACKEND", "").strip().lower() or None
if _requested not in (None, "fused", "reference"):
    raise ValueError(f"FASTGAN_BACKEND must be 'fused' or 'reference', got {_requested!r}")

_state = {"backend": "reference" if (_requested == "reference" or not COMPILED) else "fused"}
_warned = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


if _requested == "reference":
    _warn_once("env", "fastgan: FASTGAN_BACKEND=reference is set, so the stock-PyTorch reference path runs "
                      "instead of the fused kernels; unset it to use them.")
elif not COMPILED:
    _warn_once("build", f"fastgan: the compiled module fastgan._C did not load ({LOAD_ERROR}); the slower "
                        f"stock-PyTorch reference path runs instead. To use the fused kernels, {BUILD_HINT}.")


def backend() -> str:
    """'fused' when the compiled kernels run, 'reference' when the stock-PyTorch path does."""
    return _state["backend"]


def set_backend(name: str) -> None:
    if name not in ("fused", "reference"):
        raise ValueError(f"backend must be 'fused' or 'reference', got {name!r}")
    if name == "fused" and not COMPILED:
        raise RuntimeError(f"fastgan: the fused backend needs fastgan._C, which did not load ({LOAD_ERROR}); "
                           f"{BUILD_HINT}")
    _state["backend"] = name


@contextlib.contextmanager
def use_backend(name: str):
    previous = backend()
    set_backend(name)
    try:
        yield
    finally:
        _state["backend"] = previous


def fast_path(tensor) -> bool:
    """fused_for's answer where it is yes, cheaply: the fused backend and a device with
    kernels. A no sends the caller through fastgan.functional, which says why once."""
    return (_state["backend"] == "fused" and isinstance(tensor, torch.Tensor)
            and ((tensor.is_cpu and KERNELS["cpu"]) or (tensor.is_cuda and KERNELS["cuda"])))


def fused_for(tensor: torch.Tensor) -> bool:
    """Whether the fused kernels handle this tensor's device; says once when they can't."""
    if _state["backend"] != "fused" or not isinstance(tensor, torch.Tensor):
        return False  # the reference path's checks name a wrong argument type
    device_type = tensor.device.type
    if KERNELS.get(device_type, False):
        return True
    _warn_once(f"device-{device_type}",
               f"fastgan: fastgan._C has no {device_type.upper()} kernels (it was built without them), so "
               f"{device_type} tensors take the stock-PyTorch reference path. To build them, install a torch "
               f"with {device_type.upper()} support and rebuild: {BUILD_HINT}.")
    return False
