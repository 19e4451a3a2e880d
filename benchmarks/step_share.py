"""How much of a stock DCGAN step fastgan's fusion can remove: the operator time (torch.profiler,
self CPU time) of the ops fastgan replaces (BatchNorm, the activations, the BCE loss and their
backward) as a share of the whole stock step, and the speed-up a fused step would reach if those
ops took no time at all. Run: python benchmarks/step_share.py [steps] (the benchmark sizes)."""
import sys

from torch.profiler import profile

from test_step import build, real_batch

REPLACED = {"native_batch_norm", "native_batch_norm_backward", "leaky_relu", "leaky_relu_", "leaky_relu_backward",
            "relu", "relu_", "threshold_backward", "tanh", "tanh_backward", "binary_cross_entropy_with_logits",
            "binary_cross_entropy_with_logits_backward", "sigmoid", "full_like"}


def replaced_share(step, steps, replaced_ops=REPLACED):
    """(ms of the replaced ops, ms in all) per call of step(), self CPU time under the profiler,
    after three warm-up calls."""
    for _ in range(3):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    replaced = sum(e.self_cpu_time_total for e in events if e.key.removeprefix("aten::") in replaced_ops)
    return replaced / steps / 1e3, total / steps / 1e3


def share(precision, steps):
    step, _ = build("stock-eager", precision)
    real = real_batch(precision)
    return replaced_share(lambda: step(real), steps)


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for precision in ("fp32", "bf16-cl"):
        replaced, total = share(precision, steps)
        print(f"{precision}: replaced ops {replaced:.1f} ms of {total:.1f} ms per stock step ({replaced / total:.1%}); "
              f"a fused step with those ops free would be {total / (total - replaced):.3f}x stock")
