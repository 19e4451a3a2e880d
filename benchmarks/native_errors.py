"""Does an error raised in fastgan's C++ reach Python on this machine, and if not, where does it fail?

Each case runs in its own Python process (a crash ends only that case) and prints its exit status
and the last lines it wrote. The cases separate the parts an error passes through: torch's own C++
(stock), fastgan's pybind11 function with no dispatcher in between (set_cpu_capability), fastgan's
eager entry (pybind11 -> dispatcher -> kernel, the path fastgan's modules take) and the
dispatcher entry torch.ops.fastgan.* (torch's Python binding -> dispatcher -> kernel). When a case
crashes it runs again under gdb for the native backtrace, and the toolchain facts an unwinding
failure depends on are printed: compiler, C++ runtime and OpenMP libraries loaded, unwind tables.

    python benchmarks/native_errors.py
"""
import os
import shutil
import subprocess
import sys
import textwrap

BAD_RANK = "x = torch.randn(3, 8, 8); w = torch.ones(3); b = torch.zeros(3)\n"
CASES = {
    "stock torch error": "import torch\ntorch.ones(2, 3) @ torch.ones(2, 3)",
    "fastgan pybind11 function": "import torch, fastgan\nfastgan._C.set_cpu_capability('no-such-isa')",
    "fastgan eager entry": "import torch, fastgan\n" + BAD_RANK +
        "fastgan._C.batch_norm_act(x, w, b, None, None, None, True, 0.1, 1e-5, 'relu', 0.0)",
    "torch.ops.fastgan": "import torch, fastgan\n" + BAD_RANK +
        "torch.ops.fastgan.batch_norm_act(x, w, b, None, None, None, True, 0.1, 1e-5, 'relu', 0.0)",
    "eager entry, one thread": "import torch, fastgan\ntorch.set_num_threads(1)\n" + BAD_RANK +
        "fastgan._C.batch_norm_act(x, w, b, None, None, None, True, 0.1, 1e-5, 'relu', 0.0)",
}
# A minimal extension built here by the same compiler, with fastgan's flags and without: if it
# crashes too, the cause is this compiler with this torch, not fastgan's code.
MINIMAL_SOURCE = r"""#include <torch/extension.h>
void fail() { TORCH_CHECK_VALUE(false, "minimal extension error"); }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("fail", &fail); }
"""
MINIMAL = ("import os, tempfile, torch, torch.utils.cpp_extension as ce\n"
           "d = tempfile.mkdtemp(); src = os.path.join(d, 'probe.cpp'); open(src, 'w').write({source!r})\n"
           "m = ce.load('probe_{tag}', [src], extra_cflags={flags}, extra_ldflags={ldflags}, build_directory=d)\n"
           "m.fail()")
MINIMAL_CASES = {
    "minimal extension": dict(tag="plain", flags=["-O3"], ldflags=[]),
    "minimal extension, -fopenmp": dict(tag="omp", flags=["-O3", "-fopenmp"], ldflags=["-fopenmp"]),
}
WRAP = textwrap.dedent("""\
    try:
    {body}
    except Exception as e:
        print('raised', type(e).__name__ + ':', str(e).splitlines()[0][:160])
    else:
        print('no exception')
    """)


def script(body):
    return WRAP.format(body=textwrap.indent(body, "    "))


def run(argv, timeout=60, env=None):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "timed out", ""
    status = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
    return status, (p.stdout + p.stderr).strip()


def facts():
    import torch

    import fastgan._C as C
    so = C.__file__
    print("compiler:", subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0])
    print("python:", sys.version.split()[0], "torch:", torch.__version__, "module:", so)
    ldd = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
    print("module links:", ", ".join(line.split()[0] for line in ldd.splitlines()
                                      if any(k in line for k in ("gomp", "stdc++", "gcc_s", "omp"))))
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    print("torch/lib OpenMP:", [f for f in os.listdir(torch_lib) if "omp" in f])
    bundled = os.path.join(os.path.dirname(torch.__file__), "..", "torch.libs")
    print("torch.libs:", os.listdir(bundled) if os.path.isdir(bundled) else "-")
    runtime = ("gomp", "omp.so", "stdc++", "gcc_s")
    with open("/proc/self/maps") as f:
        loaded = sorted({line.split()[-1] for line in f if any(k in line for k in runtime)})
    print("loaded in this process:", loaded)
    if shutil.which("readelf"):
        hdr = subprocess.run(["readelf", "-lW", so], capture_output=True, text=True).stdout
        print("module has .eh_frame_hdr:", "GNU_EH_FRAME" in hdr)


def main():
    try:
        facts()
    except Exception as e:  # the facts are context; the cases below are the check
        print("facts failed:", e)
    crashed = []
    for name, body in CASES.items():
        status, out = run([sys.executable, "-c", script(body)])
        tail = " | ".join(out.splitlines()[-3:])
        print(f"{name}: {status}: {tail}")
        if status.startswith("signal"):
            crashed.append(body)
    if crashed:
        for name, kw in MINIMAL_CASES.items():
            status, out = run([sys.executable, "-c", script(MINIMAL.format(source=MINIMAL_SOURCE, **kw))],
                              timeout=120)
            print(f"{name}: {status}: {' | '.join(out.splitlines()[-3:])}")
    debugger = shutil.which("gdb")
    if crashed and debugger:
        print("--- the first crashed case under gdb:")
        status, out = run([debugger, "-batch", "-ex", "set pagination off", "-ex", "run", "-ex", "bt 40",
                           "-ex", "info registers rip", "-ex", "x/4i $pc",
                           "--args", sys.executable, "-c", script(crashed[0])], timeout=120)
        keep = [line for line in out.splitlines() if not line.startswith(("[New Thread", "[Thread", "[Inferior"))]
        print("\n".join(keep[-70:]))
    print("result:", "C++ errors reach Python" if not crashed else f"{len(crashed)} case(s) crashed")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
