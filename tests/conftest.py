import os

import pytest
import torch

import fastgan
from fastgan import _backend

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


def pytest_report_header(config):
    return (f"fastgan backend: {fastgan.backend()}, compiled: {_backend.COMPILED}, kernels: {_backend.KERNELS}, "
            f"torch {torch.__version__}")


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """Decoded-image caches go to a folder of the test session, never the user's ~/.cache (the
    variable reaches the subprocesses and torchrun ranks the tests start)."""
    os.environ["FASTGAN_DATA_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))


@pytest.fixture(params=["fused", "reference"])
def backend(request):
    """Runs a test once on the compiled kernels and once on the stock reference path. The
    fused run fails (not skips) when fastgan._C is missing, unless FASTGAN_NO_EXT=1 says the
    package was deliberately installed without it."""
    if request.param == "fused" and not _backend.COMPILED:
        if os.environ.get("FASTGAN_NO_EXT") == "1":
            pytest.skip("FASTGAN_NO_EXT=1: no compiled module")
        pytest.fail(f"fastgan._C did not load: {_backend.LOAD_ERROR}")
    with fastgan.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(scope="session")
def emu():
    """The emulation build of the CUDA kernels (tests/emu.py), built on first use."""
    if os.environ.get("FASTGAN_NO_EXT") == "1":
        pytest.skip("FASTGAN_NO_EXT=1: no C++ toolchain expected")
    from emu import load

    return load()


@pytest.fixture
def ops(emu):
    return torch.ops.fastgan_emu
