"""Build fastgan and its compiled module fastgan._C, against the torch already installed.

  pip install .                             CPU kernels (CPU torch) or CPU+CUDA (CUDA torch + nvcc);
                                            _build/fastgan_build.py finds the installed torch
  pip install --no-build-isolation .        the same, without the isolated build environment

Variables:
  FASTGAN_NO_EXT=1       pure-Python package, reference path only
  FASTGAN_FORCE_CUDA=1   build the CUDA kernels although no GPU is visible
  FASTGAN_NO_CUDA=1      CPU kernels only, even with a CUDA torch
  CUDA_HOME              the CUDA toolkit root (found from `nvcc -dryrun` when unset)
  TORCH_CUDA_ARCH_LIST   GPU architectures; default: the visible GPUs, else 8.0;8.6;8.9;9.0+PTX
  MAX_JOBS               parallel compile jobs (ninja)
  FASTGAN_DEBUG_INFO=1   compile with -g (debug information; the build takes about 1.7x as long)
  FASTGAN_PTXAS_VERBOSE=1  ptxas reports each kernel's registers, spills and shared memory in the
                         build log (benchmarks/kernel_resources.py makes a table of it)
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0+PTX"


def flag(name):
    return os.environ.get(name, "") not in ("", "0", "false", "False")


def fail(message):
    sys.exit(f"fastgan build error: {message}")


def host_cxx():
    """The C++ compiler the module is compiled and linked with."""
    return os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"


def build_probe(tmp, source, args):
    """Builds source with host_cxx() and args into the folder tmp: the output's path, or None
    when the compiler fails (or is missing)."""
    src, out = os.path.join(tmp, "probe.cpp"), os.path.join(tmp, "probe.out")
    with open(src, "w") as f:
        f.write(source)
    try:
        built = subprocess.run(host_cxx().split() + [src, "-o", out] + args, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out if built.returncode == 0 else None


def openmp_flags():
    """(compile, link) flags that let at::parallel_for use torch's threads: -fopenmp where the
    C++ compiler builds and links a program with it (GCC on Linux does), else none, with a
    warning, and the CPU kernels run on one thread."""
    if not sys.platform.startswith("linux"):
        return [], []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ok = build_probe(tmp, "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n",
                         ["-fopenmp"]) is not None
    if not ok:
        print(f"fastgan: warning: {host_cxx()} cannot build with -fopenmp, so the CPU kernels will run on one thread "
              "whatever torch.set_num_threads says (install GCC, or libomp for clang, and rebuild)")
        return [], []
    # at::parallel_for is a header template: compiled without OpenMP it runs every loop on one
    # thread. -fopenmp links libgomp.so.1, which resolves to the libgomp torch has already
    # loaded, so the kernels share torch's thread pool and torch.set_num_threads.
    return ["-fopenmp"], ["-fopenmp"]


def shared_library_needs(source, flags):
    """The NEEDED entries of a shared library host_cxx() builds from source with flags (and the
    LDFLAGS the real link gets), or None when it cannot be built or read."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lib = build_probe(tmp, source, ["-shared", "-fPIC"] + flags + os.environ.get("LDFLAGS", "").split())
        if lib is None:
            return None
        try:
            dynamic = subprocess.run(["readelf", "-dW", lib], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic.stdout)


def cxx_runtime_link_flags():
    """Link flags that make the module use the C++ runtime torch runs with, libstdc++.so.6,
    rather than carry its own copy. A compiler links libstdc++ statically when, for example, its
    libstdc++.so cannot be used but libstdc++.a can, or LDFLAGS says -static-libstdc++; an
    Ubuntu 24.04 host with GCC 13 did so, for a reason not pinned down. Such a module has two C++
    runtimes in one process, and there formatting a number into an error message crashed
    Python (std::locale's facets of one copy read through the other). The fix links the loaded
    libstdc++.so.6 by its path; where the compiler links it dynamically no flag is added."""
    if not sys.platform.startswith("linux"):
        return []
    cxx = host_cxx()
    source = ("#include <sstream>\n#include <string>\n"
              "std::string f(long v) { std::ostringstream s; s << v; return s.str(); }\n")
    needs = shared_library_needs(source, [])
    if needs is None or any(n.startswith(("libstdc++", "libc++")) for n in needs):
        return []
    with open("/proc/self/maps") as maps:  # torch, imported by now, has loaded the runtime
        loaded = sorted({line.split()[-1] for line in maps if re.search(r"/libstdc\+\+\.so[.0-9]*$", line.strip())})
    if loaded and "libstdc++.so.6" in (shared_library_needs(source, [loaded[0]]) or []):
        print(f"fastgan: {cxx} links libstdc++ statically here (a test library it built does not load "
              f"libstdc++.so.6); linking {loaded[0]}, the C++ runtime torch runs with, instead")
        return [loaded[0]]
    print(f"fastgan: warning: {cxx} links libstdc++ statically and {loaded[0] if loaded else 'no libstdc++.so.6'} "
          "could not replace it: an error raised by fastgan's C++ may crash Python instead. Install the compiler's "
          "libstdc++ development package (it provides libstdc++.so) and build again")
    return []


def toolkit_root_from_nvcc():
    """The real toolkit root. nvcc may be a wrapper script whose folder holds no headers,
    so ask nvcc itself (its -dryrun prints TOP=<root>)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        out = subprocess.run([nvcc, "-dryrun", "x.cu"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
    return os.path.normpath(match.group(1)) if match else None


def has_cuda_headers(root):
    return bool(root) and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def configure_cuda_home():
    """Must run before torch.utils.cpp_extension is imported: it reads CUDA_HOME at import."""
    given = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if given:
        if not has_cuda_headers(given):
            fail(f"CUDA_HOME={given} has no include/cuda_runtime.h; set CUDA_HOME to the CUDA toolkit "
                 "root (`nvcc -dryrun x.cu 2>&1 | grep TOP=` prints it), or FASTGAN_NO_CUDA=1 for CPU only.")
        return given
    root = toolkit_root_from_nvcc()
    if has_cuda_headers(root):
        os.environ["CUDA_HOME"] = root
        return root
    return None


def wheel_cuda_include_dirs():
    """Headers that torch's CUDA wheels install under site-packages/nvidia (cuDNN, cuBLAS,
    the CUDA 13 runtime); torch's own headers include them."""
    dirs = []
    for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "include")))
    return [d for d in dirs if os.path.isdir(d)]


def want_cuda(torch):
    if flag("FASTGAN_NO_CUDA") or torch.version.cuda is None:
        return False
    return flag("FASTGAN_FORCE_CUDA") or torch.cuda.is_available()


def check_cuda_versions(torch, cuda_home):
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.path.exists(nvcc):
        nvcc = shutil.which("nvcc") or nvcc
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except OSError as exc:
        fail(f"cannot run nvcc ({exc}); put the CUDA toolkit's bin folder on PATH or set CUDA_HOME.")
    match = re.search(r"release (\d+)\.(\d+)", out)
    if not match:
        fail(f"could not read nvcc's version from: {out.strip()!r}")
    nvcc_major = int(match.group(1))
    torch_major = int(torch.version.cuda.split(".")[0])
    if nvcc_major != torch_major:
        fail(f"nvcc is CUDA {match.group(1)}.{match.group(2)} but torch {torch.__version__} was built with "
             f"CUDA {torch.version.cuda}; install a torch built for CUDA {nvcc_major} or point CUDA_HOME "
             f"at a CUDA {torch_major} toolkit.")


BUILD_INFO = os.path.join(HERE, "fastgan", "_build_info.json")


def record_build(torch, with_cuda, arch_list):
    """What fastgan/_backend.py compares with the running torch before it loads the module: a
    module built against another torch must not load silently (no C++ ABI is promised)."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cxx11_abi": bool(torch.compiled_with_cxx11_abi()),
            "cuda_kernels": with_cuda, "cuda_arch_list": arch_list}
    with open(BUILD_INFO, "w") as f:
        json.dump(info, f, indent=2)


def declared_torch_floor():
    """(major, minor) of pyproject.toml's `torch>=X.Y`, the one place the supported range is declared."""
    with open(os.path.join(HERE, "pyproject.toml")) as f:
        match = re.search(r'"torch>=(\d+)\.(\d+)', f.read())
    return int(match.group(1)), int(match.group(2))


def check_torch_version(torch):
    """One sentence instead of a page of compiler errors: the C++ code uses torch APIs that older
    releases spell differently, and CI builds and tests the floor."""
    floor = declared_torch_floor()
    found = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if found < floor:
        fail(f"fastgan needs torch {floor[0]}.{floor[1]} or newer (this environment has torch {torch.__version__}); "
             f"upgrade torch (`pip install 'torch>={floor[0]}.{floor[1]}'`), then install fastgan again.")


def extensions():
    if flag("FASTGAN_SDIST"):  # set by the build backend: an sdist carries sources only
        return [], {}
    if flag("FASTGAN_NO_EXT"):
        print("fastgan: FASTGAN_NO_EXT=1, installing the pure-Python package (reference path only)")
        if os.path.exists(BUILD_INFO):
            os.unlink(BUILD_INFO)
        return [], {}
    cuda_home = configure_cuda_home()
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        fail("torch is not installed. fastgan's kernels are compiled against the torch you will run them with, so "
             "install torch first, then run the same `pip install` command again (or set FASTGAN_NO_EXT=1 for the "
             "pure-Python package).")
    check_torch_version(torch)

    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # -fno-trapping-math lets GCC turn the activation selects into vector blends (it will not
    # otherwise evaluate both arms); no value changes, unlike -ffast-math.
    cxx = ["-O3", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno"]
    omp_compile, link = openmp_flags()
    cxx += omp_compile
    link = link + cxx_runtime_link_flags()
    define_macros = []
    use_cuda = want_cuda(torch)
    if use_cuda:
        if cuda_home is None:
            fail("building the CUDA kernels needs the CUDA toolkit: no CUDA_HOME is set and nvcc was not found "
                 "on PATH. Set CUDA_HOME to the toolkit root, or FASTGAN_NO_CUDA=1 for CPU kernels only.")
        check_cuda_versions(torch, cuda_home)
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST") or ";".join(
            f"{major}.{minor}" for major, minor in
            sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}))
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros += [("FASTGAN_WITH_CUDA", None), ("FASTGAN_CUDA_ARCH_LIST", f'"{arch_list}"')]
        print(f"fastgan: building CPU + CUDA kernels for {arch_list} with the toolkit at {cuda_home}")
        record_build(torch, True, arch_list)
        ext = cpp_extension.CUDAExtension(
            "fastgan._C", sources, define_macros=define_macros,
            include_dirs=[os.path.join(HERE, "csrc")] + wheel_cuda_include_dirs(),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo"] + (["-Xptxas", "-v"] if flag(
                "FASTGAN_PTXAS_VERBOSE") else [])}, extra_link_args=link)
    else:
        why = ("FASTGAN_NO_CUDA=1" if flag("FASTGAN_NO_CUDA") else
               "torch is a CPU build" if torch.version.cuda is None else
               "no GPU is visible (FASTGAN_FORCE_CUDA=1 builds the CUDA kernels anyway)")
        print(f"fastgan: building CPU kernels only ({why}) against torch {torch.__version__}")
        record_build(torch, False, "")
        ext = cpp_extension.CppExtension("fastgan._C", sources, define_macros=define_macros,
                                         include_dirs=[os.path.join(HERE, "csrc")],
                                         extra_compile_args={"cxx": cxx}, extra_link_args=link)
    return [ext], {"build_ext": persistent_build_ext(cpp_extension, torch, use_cuda)}


def persistent_build_ext(cpp_extension, torch, use_cuda):
    """torch's BuildExtension (ninja), compiling into build/<torch build>/ rather than a fresh
    temporary folder: reinstalling with unchanged sources (another extra, `pip install -e .`
    again) compiles nothing, and ninja recompiles only what changed (it also notices changed
    flags). The folder is keyed by everything an object file depends on besides the sources."""
    key = "-".join([f"torch{torch.__version__}", f"py{sys.version_info[0]}{sys.version_info[1]}",
                    f"abi{int(torch.compiled_with_cxx11_abi())}",
                    "cuda" + os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(";", "_") if use_cuda else "cpu"])
    folder = os.path.join(HERE, "build", re.sub(r"[^A-Za-z0-9._+-]", "_", key))

    class BuildExtension(cpp_extension.BuildExtension.with_options(use_ninja=True)):
        def finalize_options(self):
            super().finalize_options()
            self.build_temp = folder

        def build_extensions(self):
            # Python's own compile flags carry -g. Debug information for torch's templates is
            # about 40 % of the compile time (ops.cpp: 39 s with it, 23 s without), and a user
            # never reads it; FASTGAN_DEBUG_INFO=1 keeps it.
            if not flag("FASTGAN_DEBUG_INFO"):
                self.compiler.compiler_so = [f for f in self.compiler.compiler_so if f not in ("-g", "-g2", "-g3")]
            jobs = f"{os.environ['MAX_JOBS']} jobs" if os.environ.get("MAX_JOBS") else "every core"
            print(f"fastgan: compiling {len(self.extensions[0].sources)} files with ninja ({jobs}) in {folder}; "
                  f"from scratch this takes about {'2.5 min per GPU architecture' if use_cuda else '1.5 min'} on 2 "
                  f"cores, and files that did not change are not compiled again", flush=True)
            start = time.monotonic()
            super().build_extensions()
            print(f"fastgan: compiled and linked in {time.monotonic() - start:.0f} s", flush=True)

    return BuildExtension


ext_modules, cmdclass = extensions()
setup(packages=find_packages(include=["fastgan", "fastgan.*"]), package_data={"fastgan": ["_build_info.json"]},
      ext_modules=ext_modules, cmdclass=cmdclass)
