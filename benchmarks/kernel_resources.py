"""What ptxas says each CUDA kernel uses, as a table: registers, spills, stack, static shared
memory, and how many 256-thread blocks fit on one multiprocessor with those registers.

  FASTGAN_PTXAS_VERBOSE=1 FASTGAN_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 \\
      pip install -v --no-build-isolation -e . > build.log 2>&1
  python benchmarks/kernel_resources.py build.log [--arch sm_90] [--out table.md]

tests/test_kernel_resources.py holds every kernel to its limits where such a log exists
(FASTGAN_PTXAS_LOG; CI's CUDA job writes one)."""
import argparse
import math
import re
import shutil
import subprocess
import sys

# Hopper (sm_90) per multiprocessor: what decides how many blocks are resident.
REGISTERS_PER_SM = 65536
REGISTER_UNIT_PER_WARP = 256  # registers are given to a warp in units of 256
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
THREADS_PER_BLOCK = 256  # every fastgan kernel's block (kThreads)

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
# "Used 64 registers, used 1 barriers, 16 bytes cumulative stack size, 16641 bytes smem, ...": the
# figures after the registers come in an order that depends on what the kernel has, so each is
# read on its own.
USED = re.compile(r"Used (\d+) registers")
SMEM = re.compile(r"(\d+) bytes smem")


def parse(text, arch="sm_90"):
    """[{kernel, arch, registers, stack, spill_stores, spill_loads, smem}] for the entry
    functions compiled for `arch`, in the order ptxas reports them, each kernel once."""
    kernels, current = {}, None
    for line in text.splitlines():
        if m := ENTRY.search(line):
            current = {"kernel": m.group(1), "arch": m.group(2), "registers": 0, "stack": 0, "spill_stores": 0,
                       "spill_loads": 0, "smem": 0}
            if current["arch"] == arch:
                kernels.setdefault(current["kernel"], current)
            continue
        if current is None:
            continue
        if m := FRAME.search(line):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif m := USED.search(line):
            smem = SMEM.search(line)
            current.update(registers=int(m.group(1)), smem=int(smem.group(1)) if smem else 0)
            current = None
    return list(kernels.values())


def blocks_per_sm(registers, threads=THREADS_PER_BLOCK):
    """Resident blocks per multiprocessor that the registers allow (shared memory aside)."""
    warps = threads // 32
    per_warp = math.ceil(max(registers, 1) * 32 / REGISTER_UNIT_PER_WARP) * REGISTER_UNIT_PER_WARP
    return min(REGISTERS_PER_SM // (per_warp * warps), MAX_WARPS_PER_SM // warps, MAX_BLOCKS_PER_SM)


def demangle(names):
    tool = shutil.which("c++filt")
    if not tool:
        return names
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def short(name):
    """The kernel's name and template arguments, without namespaces and parameter lists."""
    name = re.sub(r"\bfastgan::(cuda::)?(\(anonymous namespace\)::)?(bn::)?", "", name)
    name = re.sub(r"^void ", "", name)
    depth = 0
    for i, ch in enumerate(name):  # drop the parameter list: the last top-level "(...)"
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            return name[:i]
    return name


def table(kernels):
    names = demangle([k["kernel"] for k in kernels])
    rows = ["| kernel | registers | spills (bytes) | stack (bytes) | static smem (bytes) | blocks/SM at 256 threads |",
            "| --- | --- | --- | --- | --- | --- |"]
    for k, name in sorted(zip(kernels, names), key=lambda kn: short(kn[1])):
        rows.append(f"| `{short(name)}` | {k['registers']} | {k['spill_stores'] + k['spill_loads']} | {k['stack']} | "
                    f"{k['smem']} | {blocks_per_sm(k['registers'])} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    with open(args.log, errors="replace") as f:
        kernels = parse(f.read(), args.arch)
    if not kernels:
        sys.exit(f"no ptxas report for {args.arch} in {args.log} (build with FASTGAN_PTXAS_VERBOSE=1 and pip -v)")
    text = table(kernels)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
