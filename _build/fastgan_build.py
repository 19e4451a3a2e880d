"""fastgan's build backend: setuptools' own, run against the torch of the environment fastgan is
being installed into.

Why: fastgan's compiled module must be built against exactly the torch it will run with (torch
promises no C++ ABI across versions). With build isolation, pip builds in a fresh environment
that sees none of the user's packages, and listing torch as a build requirement makes pip
download some other torch there (the newest from the registry, a 2-5 GB CUDA build). So torch
is not a build requirement; instead each hook that builds asks the target environment's Python
(`python -I`, which ignores the isolated environment's path settings) where its torch is, and
appends that site folder to the end of sys.path, behind the isolated build tools. No torch
there: the build stops with one sentence saying how to install it. Without build isolation
torch is importable already and nothing changes.

Front ends that build with another interpreter than the target environment's (uv, for one)
cannot be followed this way; with them, install with --no-build-isolation (uv: or
`extra-build-dependencies` with `match-runtime`).
"""
import os
import subprocess
import sys

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook this module does not wrap)

NO_TORCH = ("fastgan build error: torch is not installed in the Python environment fastgan is being installed into "
            "({python}). fastgan's kernels are compiled against the torch you will run them with, so install torch "
            "first, then fastgan: `pip install torch` (a CUDA build on Linux; for the CPU-only build, `pip install "
            "torch --index-url https://download.pytorch.org/whl/cpu`), then the same `pip install` command again. "
            "FASTGAN_NO_EXT=1 installs the pure-Python package (stock-PyTorch path only).")


def _target_site_of_torch():
    """The folder holding the target environment's torch package, or None."""
    probe = "import os, torch; print(os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__))))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, env=env,
                             timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


def _use_target_torch():
    if os.environ.get("FASTGAN_NO_EXT", "") not in ("", "0"):
        return
    try:
        import torch  # noqa: F401  (no build isolation: the environment's own torch)
        return
    except ImportError:
        pass
    site = _target_site_of_torch()
    if site is None:
        sys.exit(NO_TORCH.format(python=sys.executable))
    sys.path.append(site)


def get_requires_for_build_wheel(config_settings=None):
    _use_target_torch()
    return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    _use_target_torch()
    return _setuptools.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _use_target_torch()
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _use_target_torch()
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _use_target_torch()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _use_target_torch()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


# An sdist is only source: it needs no torch, and setup.py builds no extension for it.
def get_requires_for_build_sdist(config_settings=None):
    os.environ["FASTGAN_SDIST"] = "1"
    return _setuptools.get_requires_for_build_sdist(config_settings)


def build_sdist(sdist_directory, config_settings=None):
    os.environ["FASTGAN_SDIST"] = "1"
    return _setuptools.build_sdist(sdist_directory, config_settings)
