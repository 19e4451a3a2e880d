"""Runs every fastgan CUDA kernel forward and backward once, on shapes that take both the
16-byte and the scalar path in both layouts and every dtype. Meant to run under
compute-sanitizer (memcheck, racecheck); benchmarks/gpu_run.sh does that. Exits non-zero
if a kernel raises."""
import itertools
import sys

import torch

import fastgan  # noqa: F401  (loads the ops)

ops = torch.ops.fastgan


def main() -> int:
    assert torch.cuda.is_available(), "needs a CUDA device"
    dev = "cuda"
    shapes = [(2, 3, 5, 7), (4, 8, 4, 4), (2, 64, 8, 8), (3, 5, 1, 1)]
    dtypes = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    count = 0
    for shape, dtype, cl in itertools.product(shapes, dtypes, (False, True)):
        x = torch.randn(shape, device=dev, dtype=dtype)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        c = shape[1]
        sdt = torch.float64 if dtype == torch.float64 else torch.float32
        w, b = torch.rand(c, device=dev, dtype=sdt) + 0.5, torch.randn(c, device=dev, dtype=sdt)
        rm, rv = torch.zeros(c, device=dev, dtype=sdt), torch.ones(c, device=dev, dtype=sdt)
        for training, act in itertools.product((True, False), ("relu", "leaky_relu", "tanh")):
            out, mean, var = ops.batch_norm_act(x, w, b, rm, rv, training, 1e-5, act, 0.2)
            ops.batch_norm_act_backward(torch.randn_like(out), x, w, b, mean, var, training, 1e-5, act, 0.2)
            count += 2
        nbt = torch.zeros((), device=dev, dtype=torch.long)
        ops.batch_norm_update_stats(rm, rv, nbt, mean, var, None, shape[0] * shape[2] * shape[3])
        y = ops.activation(x, "leaky_relu", 0.2)
        ops.activation_backward(torch.randn_like(y), y, "leaky_relu", 0.2)
        flat = x.flatten()
        for reduction, target in itertools.product((0, 1, 2), (None, torch.rand_like(flat))):
            ops.bce_with_logits(flat, target, 0.9, reduction)
        count += 10
    big = torch.randn(300_000, device=dev)
    ops.bce_with_logits(big, None, 1.0, 1)  # several blocks: the last-block reduction
    torch.cuda.synchronize()
    print(f"sanitize_kernels: {count} kernel calls finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
