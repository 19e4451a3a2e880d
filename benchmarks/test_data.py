"""Time to the first training batch and peak resident memory for a folder of generated 64x64
RGB images (50,000; 2,000 with FASTGAN_BENCH_QUICK=1): the first run, which decodes them on all
cores into the cache, and a restart, which memory-maps the cache. Each run is a fresh Python
process, so its peak RSS (ru_maxrss) is its own; the table subtracts the peak of a process
that only imports torch and fastgan, which both runs pay before any data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import QUICK, device_name

N = 2000 if QUICK else 50000
SIZE = 64

PROBE = r"""
import json, os, resource, sys, time
start = time.perf_counter()
import torch
from fastgan.app import data
imported = time.perf_counter()
if sys.argv[1] != "import-only":
    d = data.load(sys.argv[1], 64, 3, sys.argv[2])
    batch = d.as_float(torch.randint(len(d.images), (64,)))  # the first step's batch
    n = len(d.images)
else:
    n = 0
print(json.dumps({"seconds": time.perf_counter() - imported, "images": n,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _write_images(args):
    folder, start, stop = args
    from PIL import Image

    rng = np.random.default_rng(start)
    for i in range(start, stop):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)  # smooth once upscaled: small PNGs
        Image.fromarray(small).resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(
            os.path.join(folder, f"{i:06d}.png"))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    pytest.importorskip("PIL")
    import multiprocessing

    folder = tmp_path_factory.mktemp("images")
    chunks = [(str(folder), s, min(s + 1000, N)) for s in range(0, N, 1000)]
    with multiprocessing.get_context("fork").Pool() as pool:
        pool.map(_write_images, chunks)
    return folder


def _probe(*args):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_first_run_and_restart(benchmark, image_folder, tmp_path):
    cache = str(tmp_path / "cache")
    base = _probe("import-only", "")
    first = _probe(str(image_folder), cache)
    benchmark.group = "data first step"
    restart = benchmark.pedantic(lambda: _probe(str(image_folder), cache), rounds=1, iterations=1)
    assert first["images"] == restart["images"] == N
    benchmark.extra_info.update(
        variant="fastgan", kind="data", device=device_name(), images=N, first_s=round(first["seconds"], 2),
        restart_s=round(restart["seconds"], 2), first_peak_mib=round(first["peak_mib"] - base["peak_mib"], 1),
        restart_peak_mib=round(restart["peak_mib"] - base["peak_mib"], 1),
        cache_mib=round(sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache)) / 2**20, 1))
    print(json.dumps(benchmark.extra_info))
