"""What each fused BatchNorm + activation call should cost on a GPU, predicted on the CPU: the
emulation build (tests/emu.py) runs the real CUDA kernels on the DCGAN-64 batch-128 layer shapes
and counts their launches, blocks, shared-memory bank conflicts (wavefronts per request, worst
kernel of the pass; 1 = none) and the rounds of loads the reductions' last blocks run in series
(finish rounds, worst warp of the pass). Prints a markdown table for benchmarks/results/NOTES.md,
with an empty column for what a GPU run measures.

  python benchmarks/predicted_times.py [--bandwidth 4.3e12] [--sms 132] [--launch-us 2] [--l2-us 0.5]

The model, per pass (forward: statistics + apply; backward: reduce + input):
  time = bytes / bandwidth                      the passes over memory (statistics: read x;
                                                apply: read x, write y; reduce: read x, dy;
                                                input: read x, dy, write dx)
       + launches x launch latency              eager launches back to back on one stream
       + (finish rounds + 1) x L2 round trip    the reduction's tail: its last block's ticket
                                                (one device-scope atomic), then its rounds of
                                                loads, each one L2 round trip, in series
The bandwidth is an H200's measured device-to-device copy, about 4.3 TB/s; waves are blocks per
launch / (SMs x 4 resident blocks per SM, common.cuh's kBlocksPerSm). A grid that fills under
half a wave has too few loads in flight to reach that bandwidth (common.cuh's row_splits), so
it is marked: its time is a floor, not an estimate."""
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
    """(launches, blocks, worst wavefronts per shared-memory request, finish rounds) of fn's launches."""
    emu.reset_stats()
    fn()
    stats = emu.stats()
    launches = stats["launches"]
    shared = [d["wavefronts"] / d["requests"] for d in emu.shared_stats_per_launch()[-launches:] if d["requests"]]
    return launches, stats["blocks"], max(shared, default=1.0), stats["finish_rounds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", type=float, default=4.3e12, help="bytes/s (H200 device-to-device copy)")
    parser.add_argument("--sms", type=int, default=132)
    parser.add_argument("--launch-us", type=float, default=2.0, help="one eager launch, back to back")
    parser.add_argument("--l2-us", type=float, default=0.5, help="one dependent L2 round trip (load or atomic)")
    args = parser.parse_args(argv)
    emu = load()
    emu.set_device(args.sms)
    ops = torch.ops.fastgan_emu
    print("| layer | dtype, layout | pass | launches | blocks (all launches) | waves (per launch) | "
          "bank conflicts (wavefronts/request) | finish rounds | MB moved | predicted us (bytes + launches + tail) | "
          "measured us |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, c, s in LAYERS:
        for dtype, layout in ((torch.float32, torch.contiguous_format), (torch.bfloat16, torch.channels_last)):
            x = torch.randn(BATCH, c, s, s).to(dtype).contiguous(memory_format=layout)
            w, b, rm, rv = torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c)
            nbt = torch.tensor(0)
            calls = {"forward": lambda: ops.batch_norm_act(x, w, b, rm, rv, nbt, True, 0.1, 1e-5, "relu", 0.0)}
            _, mean, var = calls["forward"]()
            calls["backward"] = lambda: ops.batch_norm_act_backward(x, x, w, b, mean, var, True, 1e-5, "relu", 0.0)
            for what, call in calls.items():
                launches, blocks, conflicts, rounds = measure(emu, call)
                waves = blocks / launches / (args.sms * BLOCKS_PER_SM)
                mb = PASSES[what] * x.numel() * x.element_size() / 1e6
                data_us = mb * 1e6 / args.bandwidth * 1e6
                launch_us = launches * args.launch_us
                tail_us = (rounds + 1) * args.l2_us
                us = data_us + launch_us + tail_us
                label = "fp32 NCHW" if dtype == torch.float32 else "bf16 NHWC"
                note = "" if waves >= 0.45 else ", under half a wave: a floor"
                print(f"| {name} {c}x{s}x{s} | {label} | {what} | {launches} | {blocks} | {waves:.2f} | "
                      f"{conflicts:.2f} | {rounds} | {mb:.1f} | {us:.1f} = {data_us:.1f} + {launch_us:.0f} + "
                      f"{tail_us:.1f}{note} | |")


if __name__ == "__main__":
    main()
