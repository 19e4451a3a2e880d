"""What each fused BatchNorm + activation call should cost on a GPU, predicted on the CPU: the
emulation build (tests/emu.py) runs the real CUDA kernels on the DCGAN-64 batch-128 layer shapes
and counts their launches and blocks; bytes moved follow from the passes each kernel makes
(statistics: read x; apply: read x, write y; backward reduce: read x, dy; backward input: read
x, dy, write dx); shared-memory bank conflicts are the emulation's count of wavefronts per
request (1 = none; the worst kernel of the pass). Prints a markdown table for benchmarks/results/NOTES.md,
which the first GPU
run confirms or refutes line by line.

  python benchmarks/predicted_times.py [--bandwidth 3.35e12] [--sms 132]

Waves: blocks per launch / (SMs x 4 resident blocks per SM, common.cuh's kBlocksPerSm). The time
is the bytes at the given bandwidth, launch latency aside; a kernel whose grid fills under half a
wave has too few loads in flight to reach that bandwidth (common.cuh's row_splits), so it is
marked."""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from emu import load  # noqa: E402

BATCH = 128
LAYERS = [("G0", 512, 4), ("G1", 256, 8), ("G2", 128, 16), ("G3", 64, 32), ("D1", 128, 16), ("D2", 256, 8),
          ("D3", 512, 4)]  # (name, channels, spatial size) of DCGAN-64's BatchNorm layers, ngf = ndf = 64
BLOCKS_PER_SM = 4
PASSES = {"forward": 3, "backward": 5}


def measure(emu, fn):
    """(launches, blocks, worst wavefronts per shared-memory request) of fn's launches."""
    before = emu.stats()
    fn()
    after = emu.stats()
    launches = after["launches"] - before["launches"]
    shared = [d["wavefronts"] / d["requests"] for d in emu.shared_stats_per_launch()[-launches:] if d["requests"]]
    return launches, after["blocks"] - before["blocks"], max(shared, default=1.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", type=float, default=3.35e12, help="bytes/s (H100 SXM HBM3: 3.35e12)")
    parser.add_argument("--sms", type=int, default=132)
    args = parser.parse_args(argv)
    emu = load()
    emu.set_device(args.sms)
    ops = torch.ops.fastgan_emu
    print("| layer | dtype, layout | pass | launches | blocks (all launches) | waves (per launch) | "
          "bank conflicts (wavefronts/request) | MB moved | predicted us |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, c, s in LAYERS:
        for dtype, layout in ((torch.float32, torch.contiguous_format), (torch.bfloat16, torch.channels_last)):
            x = torch.randn(BATCH, c, s, s).to(dtype).contiguous(memory_format=layout)
            w, b, rm, rv = torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c)
            nbt = torch.tensor(0)
            calls = {"forward": lambda: ops.batch_norm_act(x, w, b, rm, rv, nbt, True, 0.1, 1e-5, "relu", 0.0)}
            _, mean, var = calls["forward"]()
            calls["backward"] = lambda: ops.batch_norm_act_backward(x, x, w, b, mean, var, True, 1e-5, "relu", 0.0)
            for what, call in calls.items():
                launches, blocks, conflicts = measure(emu, call)
                waves = blocks / launches / (args.sms * BLOCKS_PER_SM)
                mb = PASSES[what] * x.numel() * x.element_size() / 1e6
                us = mb * 1e6 / args.bandwidth * 1e6
                label = "fp32 NCHW" if dtype == torch.float32 else "bf16 NHWC"
                note = "" if waves >= 0.45 else " (well under half a wave: latency-bound)"
                print(f"| {name} {c}x{s}x{s} | {label} | {what} | {launches} | {blocks} | {waves:.2f} | "
                      f"{conflicts:.2f} | {mb:.1f} | {us:.1f}{note} |")


if __name__ == "__main__":
    main()
