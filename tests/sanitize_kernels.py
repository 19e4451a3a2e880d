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

import torch

import fastgan  # noqa: F401  (loads the ops)

SHAPES = [(2, 3, 5, 7), (4, 8, 4, 4), (2, 64, 8, 8), (3, 5, 1, 1), (4, 2, 64, 64)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
ACTS = ("relu", "leaky_relu", "tanh", "identity", "sigmoid")


def run(ops, dev: str) -> int:
    """Calls every kernel op; returns the number of op calls."""
    count = 0
    for shape, dtype, cl in itertools.product(SHAPES, DTYPES, (False, True)):
        x = torch.randn(shape, device=dev, dtype=dtype)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        c, n = shape[1], shape[0] * shape[2] * shape[3]
        sdt = torch.float64 if dtype == torch.float64 else torch.float32
        w, b = torch.rand(c, device=dev, dtype=sdt) + 0.5, torch.randn(c, device=dev, dtype=sdt)
        rm, rv = torch.zeros(c, device=dev, dtype=sdt), torch.ones(c, device=dev, dtype=sdt)
        nbt = torch.zeros((), device=dev, dtype=torch.long)
        for training, act in itertools.product((True, False), ACTS):
            out, mean, var = ops.batch_norm_act(x, w, b, rm, rv, nbt, training, 0.1, 1e-5, act, 0.2)
            ops.batch_norm_act_backward(torch.randn_like(out), x, w, b, mean, var, training, 1e-5, act, 0.2)
            count += 2
        ops.batch_norm_act(x, None, None, None, None, None, True, None, 1e-5, "relu", 0.0)
        ops.batch_norm_update_stats(rm, rv, nbt, mean, var, None, n)
        mean, var = ops.batch_norm_stats(x)
        grad = torch.randn_like(x)
        sum_dy, sum_dy_xmu = ops.batch_norm_act_backward_reduce(grad, x, w, b, mean, var, 1e-5, "leaky_relu", 0.2)
        ops.batch_norm_act_backward_elemt(grad, x, w, b, mean, var, sum_dy / n, sum_dy_xmu / n, 1e-5, "leaky_relu",
                                          0.2)
        for act in ACTS:
            y = ops.activation(x, act, 0.2)
            ops.activation_backward(torch.randn_like(y), y, act, 0.2)
        rows = x.reshape(-1, x.size(-1))
        for act in ACTS:
            y = ops.bias_act(rows, torch.randn_like(rows[0]), act, 0.2)
            ops.bias_act_backward(torch.randn_like(y), y, act, 0.2)
        flat = x.flatten()
        for reduction, target in itertools.product((0, 1, 2), (None, torch.rand_like(flat))):
            ops.bce_with_logits(flat, target, 0.9, reduction)
        for reduction, kind in itertools.product((0, 1, 2), ("hinge", "lsgan", "linear")):
            ops.logit_loss(flat, 1.0, kind, reduction)
        fdt = torch.float64 if dtype == torch.float64 else torch.float32
        f2, f1 = torch.rand(4, 4, device=dev, dtype=fdt), torch.rand(3, device=dev, dtype=fdt)
        ops.upfirdn2d(x, f2, [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0)  # StyleGAN2's upsample
        ops.upfirdn2d(x, f1, [1, 1], [2, 2], [1, 1, 1, 1], True, 1.0)  # separable downsample
        ops.upfirdn2d(x, f2, [1, 3], [2, 1], [-1, 4, 4, 2], False, 1.0)  # crops, per-axis factors
        for act in ("lrelu", "swish", "softplus"):
            ops.stylegan_bias_act(x, x.new_ones(c), 1, act, 0.2, 1.4, 0.5)
            ops.stylegan_bias_act_backward(torch.randn_like(x), x, x.new_ones(c), 1, act, 0.2, 1.4, 0.5)
        ops.stylegan_bias_act(x, None, 1, "tanh", 0.0, 1.0, -1.0)
        a, sign = ops.filtered_lrelu_act(x, 1.4, 0.2, 0.5)
        ops.filtered_lrelu_act_backward(torch.randn_like(a), sign, 1.4, 0.2)
        count += 5 + 4 * len(ACTS) + 6 + 9 + 3 + 7 + 2
    big = torch.randn(300_000, device=dev)
    ops.bce_with_logits(big, None, 1.0, 1)  # several blocks: the last-block reduction
    ops.logit_loss(big, 0.0, "hinge", 1)
    tall = torch.randn(4096, 64, device=dev)  # several row splits: the bias gradient's last-block reduction
    ops.bias_act_backward(torch.randn_like(tall), ops.bias_act(tall, tall[0], "relu", 0.0), "relu", 0.0)
    return count + 4


def main(argv) -> int:
    if "--emu" in argv:
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
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
