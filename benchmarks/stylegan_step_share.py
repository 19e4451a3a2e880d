"""How much of a StyleGAN2 training step on the stock-op reference path (fastgan.models' compact
StyleGAN2 with R1, as benchmarks/test_stylegan_ops.py times it) goes to the ops fastgan.stylegan
replaces, and the speed-up a step would reach if they took no time: the ceiling of what fusing
them can give. The replaced reference functions run inside named torch.profiler ranges (their
forward); their backward is the autograd nodes whose sequence numbers the ops in those ranges
recorded. The second-order nodes R1 creates get new numbers and are not counted, so the share
is a lower bound. Run: python benchmarks/stylegan_step_share.py [steps]."""
import sys

from torch.profiler import profile, record_function

import fastgan.reference
import fastgan.stylegan.bias_act
from test_stylegan_ops import stylegan2_step

# The reference functions fastgan's ops replace (filtered_lrelu's goes through both).
WRAPPED = [(fastgan.reference, "upfirdn2d"), (fastgan.stylegan.bias_act, "reference")]
PREFIX = "replaced::"


def _ranged(module, name, fn):
    def ranged(*args, **kwargs):
        with record_function(f"{PREFIX}{module.__name__}.{name}"):
            return fn(*args, **kwargs)
    return ranged


def _inside_replaced(event):
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(PREFIX):
            return True
        parent = parent.cpu_parent
    return False


def share(dtype, steps):
    """(forward ms, backward ms, step ms) of the replaced ops per reference step."""
    originals = [getattr(m, n) for m, n in WRAPPED]
    for (m, n), fn in zip(WRAPPED, originals):
        setattr(m, n, _ranged(m, n, fn))
    try:
        step = stylegan2_step("ref", dtype)
        for _ in range(2):
            step()
        with profile() as prof:
            for _ in range(steps):
                step()
    finally:
        for (m, n), fn in zip(WRAPPED, originals):
            setattr(m, n, fn)
    events = prof.events()
    total = sum(e.self_cpu_time_total for e in events)
    ranges = [e for e in events if e.name.startswith(PREFIX) and not _inside_replaced(e)]
    forward = sum(e.cpu_time_total for e in ranges)
    numbers = {e.sequence_nr for e in events if e.sequence_nr >= 0 and _inside_replaced(e)}
    backward = sum(e.cpu_time_total for e in events
                   if e.name.startswith("autograd::engine::evaluate_function") and e.sequence_nr in numbers)
    return forward / steps / 1e3, backward / steps / 1e3, total / steps / 1e3


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for dtype in ("fp32", "bf16"):
        forward, backward, total = share(dtype, steps)
        replaced = forward + backward
        print(f"{dtype}: replaced ops {replaced:.1f} ms ({forward:.1f} forward, {backward:.1f} backward) of "
              f"{total:.1f} ms per reference step ({replaced / total:.1%}, a lower bound); a step with them free "
              f"would be {total / (total - replaced):.2f}x the reference")
