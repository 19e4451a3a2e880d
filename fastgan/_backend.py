"""Which path runs the ops: the compiled kernels in fastgan._C ("fused") or the stock-torch
reference ("reference"). Decided once at import; FASTGAN_BACKEND=reference forces the
reference path. Falling back is announced by one warning that says why and how to fix it; a
module built against another torch is not loaded at all, and every use says so (an error)."""
import contextlib
import glob
import importlib.util
import json
import os
import sys
import warnings

import torch

BUILD_HINT = "build it with `pip install .` in the fastgan source folder (see `python -m fastgan info`)"
FIX = BUILD_HINT  # what to do about the module not loading

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _read_build_info():
    """What setup.py recorded about the torch the module was built against, or None."""
    try:
        with open(os.path.join(_PACKAGE_DIR, "_build_info.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _torch_mismatch(built):
    """Why the module must not load into this torch (None when it may)."""
    if built is None:
        return None
    running = {"torch": torch.__version__, "cuda": torch.version.cuda,
               "cxx11_abi": bool(torch.compiled_with_cxx11_abi())}
    if all(built.get(k) == v for k, v in running.items()):
        return None

    def describe(info):
        return (f"torch {info.get('torch')} (CUDA {info.get('cuda') or 'none'}, "
                f"C++11 ABI {'on' if info.get('cxx11_abi') else 'off'})")
    return (f"fastgan's compiled module was built against {describe(built)}, but this environment has "
            f"{describe(running)}; C++ extensions only run with the torch they were built against. Rebuild it: "
            f"`pip install --force-reinstall --no-deps .` in the fastgan source folder (or `pip install -e .` for a "
            f"checkout), or set FASTGAN_BACKEND=reference to use the stock-PyTorch path")


def _installed_build_elsewhere():
    """A compiled fastgan on sys.path other than this one (e.g. site-packages), when this copy
    is a source folder: running from the checkout shadows the installed package."""
    source_root = os.path.dirname(_PACKAGE_DIR)
    if not os.path.exists(os.path.join(source_root, "setup.py")):
        return None
    for entry in sys.path:
        folder = os.path.abspath(entry or os.getcwd())
        if folder == source_root:
            continue
        found = glob.glob(os.path.join(folder, "fastgan", "_C.*"))
        if found:
            return os.path.dirname(found[0])
    return None


_requested = os.environ.get("FASTGAN_BACKEND", "").strip().lower() or None
if _requested not in (None, "fused", "reference"):
    raise ValueError(f"FASTGAN_BACKEND must be 'fused' or 'reference', got {_requested!r}")

BUILT_WITH = _read_build_info()
_C = None
MISMATCH = None  # set when a module built against another torch must not be used: every use raises it
_spec = importlib.util.find_spec("fastgan._C")
# A module found outside this package (an editable install's finder can supply another copy's)
# is not this package's: loading it would mix two builds.
if _spec is None or os.path.dirname(os.path.abspath(_spec.origin or "")) != _PACKAGE_DIR:
    elsewhere = os.path.dirname(_spec.origin) if _spec is not None and _spec.origin else _installed_build_elsewhere()
    _root = os.path.dirname(_PACKAGE_DIR)
    _where = (f"the source folder {_root}" if os.path.exists(os.path.join(_root, "setup.py")) else _PACKAGE_DIR)
    LOAD_ERROR = (f"fastgan is being imported from {_where}, which has no compiled module; the installed build is "
                  f"at {elsewhere}" if elsewhere else
                  "it is not built (the package was installed without it, e.g. with FASTGAN_NO_EXT=1)")
    if elsewhere:  # nothing to build: the build exists, this copy shadows it
        FIX = "run from another folder, or install with `pip install -e .` to use the source folder itself"
elif _torch_mismatch(BUILT_WITH) is not None:  # not loaded at all: no C++ ABI is promised across torch versions
    LOAD_ERROR = _torch_mismatch(BUILT_WITH)
    MISMATCH = None if _requested == "reference" else LOAD_ERROR
else:
    try:
        from fastgan import _C  # noqa: F401  (importing registers torch.ops.fastgan)
        LOAD_ERROR = None
    except ImportError as exc:  # typically an undefined symbol: built against another torch
        LOAD_ERROR = f"{exc} (was it built against another torch? rebuild it)"

COMPILED = _C is not None


def _has_kernel(device_type: str) -> bool:
    if not COMPILED:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::batch_norm_act", key)


# Read once: torch.compile then sees plain Python constants.
KERNELS = {"cpu": _has_kernel("cpu"), "cuda": _has_kernel("cuda")}

# With a mismatched build the state stays "fused", the user's intent, so that every use says why it cannot run.
_state = {"backend": "reference" if (_requested == "reference" or (not COMPILED and MISMATCH is None)) else "fused"}
_warned = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


if _requested == "reference":
    _warn_once("env", "fastgan: FASTGAN_BACKEND=reference is set, so the stock-PyTorch reference path runs "
                      "instead of the fused kernels; unset it to use them.")
elif not COMPILED and MISMATCH is None:
    _warn_once("build", f"fastgan: the compiled module fastgan._C did not load ({LOAD_ERROR}); the slower "
                        f"stock-PyTorch reference path runs instead. To use the fused kernels, {FIX}.")


def _refuse_mismatch() -> None:
    if MISMATCH is not None and _state["backend"] != "reference":
        raise RuntimeError(f"fastgan: {MISMATCH}")


def backend() -> str:
    """'fused' when the compiled kernels run, 'reference' when the stock-PyTorch path does.
    Raises when the compiled module was built against another torch (until the reference
    path is chosen on purpose)."""
    _refuse_mismatch()
    return _state["backend"]


def set_backend(name: str) -> None:
    """Choose what fastgan's functions and modules run: "fused" (the compiled kernels, on the
    devices that have them) or "reference" (stock PyTorch ops, the same checks and results).

    Args:
        name: "fused" or "reference".

    Raises:
        ValueError: another name. RuntimeError: "fused" when the compiled module did not load
            (the message says why and how to build it)."""
    if name not in ("fused", "reference"):
        raise ValueError(f"backend must be 'fused' or 'reference', got {name!r}")
    if name == "fused" and not COMPILED:
        raise RuntimeError(f"fastgan: the fused backend needs fastgan._C, which did not load ({LOAD_ERROR}); "
                           f"{FIX}")
    _state["backend"] = name


@contextlib.contextmanager
def use_backend(name: str):
    """A context manager: set_backend(name) inside the `with` block, the previous backend after it.

    Args:
        name: "fused" or "reference".

    Raises:
        As set_backend."""
    previous = _state["backend"]
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
    _refuse_mismatch()
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
