"""Runs every fastgan CUDA kernel forward and backward, on shapes that take the 16-byte and the
scalar path in both layouts, one and many blocks per channel, and every dtype. Meant to run
under compute-sanitizer (memcheck, racecheck, synccheck); benchmarks/gpu_run.sh does that.
Exits non-zero if a kernel raises.

  python tests/sanitize_kernels.py          the real CUDA kernels (needs a GPU)
  python tests/sanitize_kernels.py --emu    the same calls on the emulated kernels (CPU), which
                                            the test suite runs so that this script stays in
                                            step with the op schemas between GPU runs
"""
import itertools
import sys
from pathlib import Path

import torch

import fastgan  # noqa: F401  (loads the ops)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from op_registry import DTYPES, OPS  # noqa: E402

# (N, C, H, W) of the samples' main tensor: the scalar and the 16-byte path, one and many blocks
# per channel, a 1 x 1 image.
SHAPES = [(2, 3, 5, 7), (4, 8, 4, 4), (2, 64, 8, 8), (3, 5, 1, 1), (4, 2, 64, 64)]


def run(ops, dev: str) -> int:
    """Calls every kernel op (tests/op_registry.py's samples, at each shape, dtype and layout);
    returns the number of op calls."""
    count = 0
    for shape, dtype in itertools.product(SHAPES, DTYPES):
        for name, info in sorted(OPS.items()):
            if not info.emulated:  # a layer op: ATen's convolution or matmul, then these kernels
                continue
            # The strided layout is left out: the ops copy a strided input to a dense one before any
            # kernel reads it, so it runs the contiguous case's kernels.
            for layout in (layout for layout in info.layouts if layout != "strided"):
                for sample in info.samples(ops, dtype, layout, dev, shape):
                    getattr(ops, name)(*sample.args)
                    count += 1
    big = torch.randn(300_000, device=dev)
    ops.bce_with_logits(big, None, 1.0, 1)  # several blocks: the last-block reduction
    ops.logit_loss(big, 0.0, "hinge", 1)
    tall = torch.randn(4096, 64, device=dev)  # several row splits: the bias gradient's last-block reduction
    ops.bias_act_backward(torch.randn_like(tall), ops.bias_act(tall, tall[0], "relu", 0.0), "relu", 0.0)
    return count + 4


def main(argv) -> int:
    if "--emu" in argv:
        from emu import load

        load()
        count = run(torch.ops.fastgan_emu, "cpu")
    else:
        assert torch.cuda.is_available(), "needs a CUDA device (or --emu)"
        count = run(torch.ops.fastgan, "cuda")
        torch.cuda.synchronize()
    print(f"sanitize_kernels: {count} kernel calls finished")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
