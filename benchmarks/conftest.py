"""Shared set-up for the benchmark suite: device, sizes, and a paired timing helper.

Sizes: on GPU DCGAN-64 at batch 128; on CPU DCGAN-32 at batch 64 (steps) and 32 (ops).
FASTGAN_BENCH_QUICK=1 shrinks everything so CI proves the suite runs in seconds."""
import os
import re
import statistics
import time

import pytest
import torch

QUICK = os.environ.get("FASTGAN_BENCH_QUICK") == "1"
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"

if QUICK:
    SIZES = {"image": 32, "batch": 4, "op_batch": 4, "width": 8}
elif CUDA:
    SIZES = {"image": 64, "batch": 128, "op_batch": 128, "width": 64}
else:
    SIZES = {"image": 32, "batch": 64, "op_batch": 32, "width": 64}

# bf16 on the CPU too: with native bf16 (AVX512-BF16, AMX) autocast makes a CPU step faster
DTYPES = ["fp32", "bf16"]
LAYOUTS = ["nchw", "nhwc"]


class CpuHeap:
    """Whether glibc's malloc hands the CPU tensors' memory back to the kernel between calls.

    By default a block over malloc's mmap threshold is mapped afresh on every allocation, and
    its first touch costs a page fault per 4 KiB page; that threshold then rises, one freed
    block at a time, up to 32 MB. So the same op ran up to 4x faster or slower depending on which
    cases ran before it in the process (measured: StyleGAN's blur at 8 x 512 x 32 x 32, 4.5x
    fresh, 1.3x after one earlier 24 MB tensor, 1.0x with the heap kept), and the variant that
    allocates more looked slower for reasons that are the kernel's page zeroing, not its code.
    Timing keeps the heap (a fixed, large mmap threshold: every variant reuses its memory, as a
    steady training loop does); peak memory is measured with the default threshold and the heap
    trimmed first, so that the resident set follows what is allocated. A no-op off glibc and on a
    GPU (the CUDA caching allocator already recycles device memory)."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    DEFAULT_MMAP_THRESHOLD = 128 * 1024

    def __init__(self):
        self.libc = None
        if not CUDA:
            try:
                import ctypes
                libc = ctypes.CDLL(None)
                if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                    self.libc = libc
            except OSError:
                pass

    def keep(self):
        """Timing: large blocks stay in the heap and are reused without page faults."""
        if self.libc:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, 1 << 30)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, (1 << 31) - 1)

    def release(self):
        """Memory measurement: large blocks mapped and unmapped per allocation, the heap trimmed."""
        if self.libc:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, self.DEFAULT_MMAP_THRESHOLD)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, 2 * self.DEFAULT_MMAP_THRESHOLD)
            self.libc.malloc_trim(0)


CPU_HEAP = CpuHeap()
CPU_HEAP.keep()


def device_name():
    if CUDA:
        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        model = "cpu"
    return f"{model} ({os.cpu_count()} cores)"


def pytest_report_header(config):
    return f"fastgan benchmarks on {device_name()}, sizes {SIZES}, quick={QUICK}"


class PeakMemory:
    """torch.cuda.max_memory_allocated on GPU; the peak RSS increase (VmHWM after a reset
    through /proc/self/clear_refs) on CPU. In MiB."""

    def __enter__(self):
        if CUDA:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            CPU_HEAP.release()
            self.base = self._status("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if CUDA:
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.mib = max(0, self._status("VmHWM") - self.base) / 2**10
            CPU_HEAP.keep()

    @staticmethod
    def _status(key):
        try:
            with open("/proc/self/status") as f:
                return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            return 0


def paired_ratio(stock_fn, fastgan_fn, inner, rounds):
    """{"paired_ratio", "paired_q1", "paired_q3"}: the median and quartiles over rounds of
    fastgan's time / stock's, the two timed back to back in every round, in turn first (each
    side's calls synchronised once on GPU), for a benchmark's extra_info. This shared machine's speed drifts
    over seconds, so two variants timed in separate windows can differ by tens of per cent for
    no reason of their own; alternating rounds see the same drift, and the quartiles say how
    far the rounds themselves disagree (the report calls a ratio whose quartiles straddle 1 noise)."""
    if QUICK:
        inner, rounds = 1, 1

    def timed(fn):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if CUDA:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    # Which side goes first alternates too: the first call of a round can pay for what the
    # previous one left (threads parked, caches and heap holding the other side's data), and a
    # fixed order charged that to the same side every round.
    ratios = []
    for r in range(rounds):
        if r % 2 == 0:
            stock = timed(stock_fn)
            ratios.append(timed(fastgan_fn) / stock)
        else:
            fast = timed(fastgan_fn)
            ratios.append(fast / timed(stock_fn))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"paired_ratio": round(statistics.median(ratios), 4), "paired_q1": round(q1, 4), "paired_q3": round(q3, 4)}


@pytest.fixture
def measure(benchmark):
    """measure(fn, group=..., variant=..., inner=K, **extra): times K calls of fn per round
    (synchronising once per round on GPU), after warm-up; stores per-call seconds' divisor
    and peak memory in extra_info for the report."""

    def run(fn, *, group, variant, inner=None, rounds=None, **extra):
        inner = inner or (20 if CUDA else 5)
        rounds = rounds or (15 if CUDA else 25)  # this CPU is noisy: more rounds, the median holds
        if QUICK:
            inner, rounds = 1, 1

        def many():
            for _ in range(inner):
                fn()
            if CUDA:
                torch.cuda.synchronize()

        for _ in range(1 if QUICK else 3):  # warm-up: lazy init, cuDNN autotune, compilation
            many()
        with PeakMemory() as mem:
            many()
        benchmark.group = group
        benchmark.extra_info.update(variant=variant, inner=inner, peak_mib=round(mem.mib, 2), device=device_name(),
                                    gpu=CUDA, torch=torch.__version__, **extra)
        benchmark.pedantic(many, rounds=rounds, iterations=1, warmup_rounds=0)

    return run


# Both sides of every comparison get cuDNN's autotuned algorithms, as training scripts do.
torch.backends.cudnn.benchmark = True
