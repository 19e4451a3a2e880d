"""The emulated CUDA kernels (csrc/emu): fastgan's CUDA kernel sources compiled by the host
compiler against an emulation of the CUDA built-ins and registered as torch.ops.fastgan_emu,
so that tests run every CUDA kernel on the CPU. Built on first use (a few minutes; ninja
keeps the build under build/ for the next run) and only for tests: nothing installs it."""
import functools
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["csrc/emu/cuda_emu.cpp", "csrc/emu/module.cpp", "csrc/emu/batch_norm_act.cpp", "csrc/emu/elementwise.cpp",
           "csrc/emu/bias_act.cpp", "csrc/emu/selftest.cpp"]


@functools.lru_cache(maxsize=None)
def load():
    """The emulation's Python module (seed, counters); its ops are torch.ops.fastgan_emu."""
    from torch.utils import cpp_extension

    build = Path(os.environ.get("FASTGAN_EMU_BUILD_DIR") or ROOT / "build" / f"emu-torch-{torch.__version__}")
    build.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="fastgan_emu", sources=[str(ROOT / s) for s in SOURCES], build_directory=str(build),
        extra_include_paths=[str(ROOT / "csrc")],
        # The kernels cast 16-byte packs over element arrays, as CUDA code does.
        extra_cflags=["-O2", "-fno-strict-aliasing", "-DFASTGAN_CUDA_EMU=1"],
        verbose=os.environ.get("FASTGAN_EMU_VERBOSE") == "1")
