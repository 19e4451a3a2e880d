"""The emulated CUDA kernels (csrc/emu): fastgan's CUDA kernel sources compiled by the host
compiler against an emulation of the CUDA built-ins and registered as torch.ops.fastgan_emu,
so that tests run every CUDA kernel on the CPU. Built on first use (a few minutes; ninja
keeps the build under build/ for the next run) and only for tests: nothing installs it.

FASTGAN_EMU_SANITIZE=1 builds it with AddressSanitizer and UBSan, the CPU's stand-in for
compute-sanitizer's memcheck: an out-of-bounds global access, a use after free or a signed
overflow in a kernel then stops the run. The ASan runtime must be loaded before Python's own
libraries, and libstdc++ with it (or ASan cannot intercept C++ exceptions, which torch's
argument checks throw), so such a run starts as
    LD_PRELOAD="$(c++ -print-file-name=libasan.so) $(c++ -print-file-name=libstdc++.so)" ASAN_OPTIONS=detect_leaks=0 \
        FASTGAN_EMU_SANITIZE=1 pytest -m cuda_emu
(Shared memory needs no sanitizer: the emulation bounds-checks every shared access itself.)"""
import functools
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["csrc/emu/cuda_emu.cpp", "csrc/emu/module.cpp", "csrc/emu/batch_norm_act.cpp", "csrc/emu/elementwise.cpp",
           "csrc/emu/bias_act.cpp", "csrc/emu/selftest.cpp", "csrc/emu/fibers.cpp"]


@functools.lru_cache(maxsize=None)
def load():
    """The emulation's Python module (seed, counters); its ops are torch.ops.fastgan_emu."""
    from torch.utils import cpp_extension

    sanitize = os.environ.get("FASTGAN_EMU_SANITIZE") == "1"
    flavour = "-sanitize" if sanitize else ""
    build = Path(os.environ.get("FASTGAN_EMU_BUILD_DIR") or ROOT / "build" / f"emu-torch-{torch.__version__}{flavour}")
    build.mkdir(parents=True, exist_ok=True)
    # The kernels cast 16-byte packs over element arrays, as CUDA code does.
    cflags = ["-O2", "-fno-strict-aliasing", "-DFASTGAN_CUDA_EMU=1"]
    ldflags = []
    if sanitize:
        if "asan" not in os.environ.get("LD_PRELOAD", ""):
            raise RuntimeError("FASTGAN_EMU_SANITIZE=1 needs the ASan runtime loaded first: start the run with "
                               "LD_PRELOAD=\"$(c++ -print-file-name=libasan.so) $(c++ -print-file-name=libstdc++.so)\" "
                               "ASAN_OPTIONS=detect_leaks=0")
        checks = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        cflags += checks + ["-g", "-fno-omit-frame-pointer"]
        ldflags += checks
    return cpp_extension.load(
        name="fastgan_emu", sources=[str(ROOT / s) for s in SOURCES], build_directory=str(build),
        extra_include_paths=[str(ROOT / "csrc")], extra_cflags=cflags, extra_ldflags=ldflags,
        verbose=os.environ.get("FASTGAN_EMU_VERBOSE") == "1")
