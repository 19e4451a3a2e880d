"""What an install must get right, checked on copies of the installed package: a module built
against another torch is refused with one error naming both versions (and the reference path
still runs on purpose), and running from a source folder that has no compiled module says where
the installed build is."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastgan
from fastgan import _backend

OTHER_TORCH = "2.99.0+cu999"  # a torch that is not the running one, whichever that is

pytestmark = pytest.mark.skipif(not _backend.COMPILED or _backend.BUILT_WITH is None,
                                reason="needs a built fastgan._C and its _build_info.json")


def run_python(code, path, env=None, cwd=None):
    environment = {k: v for k, v in os.environ.items() if k != "FASTGAN_BACKEND"}
    environment.update(env or {}, PYTHONPATH=str(path))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          cwd=cwd or path, timeout=300)


@pytest.fixture
def package_copy(tmp_path):
    """The installed package, compiled module included, under tmp_path/site/fastgan."""
    site = tmp_path / "site"
    shutil.copytree(Path(fastgan.__file__).parent, site / "fastgan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_build_records_the_torch_it_was_built_against():
    built = _backend.BUILT_WITH
    assert built["torch"] == torch.__version__ and built["cuda"] == torch.version.cuda
    assert built["cxx11_abi"] == torch.compiled_with_cxx11_abi()
    assert _backend._C.build_info()["torch_version"] == torch.__version__.split("+")[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenMP is linked on Linux builds")
def test_cpu_kernels_are_built_to_use_torchs_threads():
    """at::parallel_for is a header template: built without OpenMP, every CPU kernel would run
    on one thread whatever torch.set_num_threads says (as they did before this was checked)."""
    assert _backend._C.build_info()["cpu_parallel"]
    # _C asks for libgomp.so.1 by that name, which must resolve to the one torch loaded, not to a
    # second copy with a pool of its own. (Other packages' renamed copies are no concern.)
    maps = [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()]
    gomp = {path for path in maps if Path(path).name == "libgomp.so.1"}
    assert len(gomp) <= 1, f"two libgomp.so.1 loaded: {sorted(gomp)}"


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None,
                    reason="libstdc++ is the runtime of Linux builds; nm reads the module's symbols")
def test_module_uses_the_loaded_cpp_runtime():
    """A module that carries its own static copy of libstdc++ has two C++ runtimes in the
    process; on Ubuntu 24.04 (GCC 13 beside GCC 14's libstdc++) formatting a number into an
    error message then crashed Python. setup.py links the runtime torch loaded instead."""
    symbols = subprocess.run(["nm", "-D", "--defined-only", _backend._C.__file__], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    copied = [line.split()[-1] for line in symbols.splitlines() if "_ZNSt6locale" in line]
    assert not copied, f"fastgan._C defines libstdc++'s std::locale ({copied[:3]}): libstdc++ was linked statically"

def test_a_module_built_against_another_torch_is_refused(package_copy):
    info_path = package_copy / "fastgan" / "_build_info.json"
    info = json.loads(info_path.read_text())
    info["torch"] = OTHER_TORCH
    info_path.write_text(json.dumps(info))
    done = run_python("import fastgan; fastgan.backend()", package_copy)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f"built against torch {OTHER_TORCH}" in last and f"this environment has torch {torch.__version__}" in last
    assert "pip install" in last
    # The layers refuse too, rather than falling back to the slow path quietly.
    done = run_python("import torch, fastgan; fastgan.nn.Conv2dLeakyReLU(3, 4, 3)(torch.randn(2, 3, 8, 8))",
                      package_copy)
    assert done.returncode != 0 and f"built against torch {OTHER_TORCH}" in done.stderr
    # `python -m fastgan info` shows both, and the stock path runs when asked for on purpose.
    done = run_python("import runpy, sys; sys.argv = ['fastgan', 'info']; runpy.run_module('fastgan', "
                      "run_name='__main__')", package_copy)
    assert done.returncode == 0, done.stderr
    assert f"built against: torch {OTHER_TORCH}" in done.stdout and f"torch {torch.__version__}" in done.stdout
    assert "backend in use: none" in done.stdout
    done = run_python("import torch, fastgan; print(fastgan.backend()); "
                      "print(fastgan.nn.Conv2dLeakyReLU(3, 4, 3)(torch.randn(2, 3, 8, 8)).shape)", package_copy,
                      env={"FASTGAN_BACKEND": "reference"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["reference", "torch.Size([2,", "4,", "6,", "6])"]


def test_cli_says_it_in_one_line(package_copy, tmp_path):
    info_path = package_copy / "fastgan" / "_build_info.json"
    info = json.loads(info_path.read_text())
    info["cxx11_abi"] = not info["cxx11_abi"]
    info_path.write_text(json.dumps(info))
    done = run_python("import sys; from fastgan.__main__ import main; sys.exit(main(['train', '--steps', '1', "
                      f"'--out', {str(tmp_path / 'run')!r}]))", package_copy)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "C++11 ABI" in done.stderr and "Traceback" not in done.stderr


def test_source_folder_without_module_names_the_installed_build(package_copy, tmp_path):
    source = tmp_path / "checkout"
    shutil.copytree(package_copy / "fastgan", source / "fastgan",
                    ignore=shutil.ignore_patterns("_C.*", "_build_info.json"))
    (source / "setup.py").write_text("# a fastgan checkout\n")
    path = f"{source}{os.pathsep}{package_copy}"
    done = run_python("import sys; from fastgan.__main__ import main; sys.exit(main(['info']))", path, cwd=source)
    assert done.returncode == 0, done.stderr
    assert f"source folder {source}, which has no compiled module; the installed build is at " in done.stdout
    assert "backend in use: reference" in done.stdout and "to fix: run from another folder" in done.stdout
    # (the installed build it names: this copy, or the test run's own install where an editable
    # install's import hook supplies fastgan._C)
    named = done.stdout.split("the installed build is at ")[1].split("\n")[0]
    assert any(name.startswith("_C.") for name in os.listdir(named))
