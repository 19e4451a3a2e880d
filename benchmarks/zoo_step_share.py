"""How much of the zoo's stock steps (benchmarks/test_zoo_steps.py) fastgan.fuse can remove: the
operator time (torch.profiler, self CPU time) of the ops the fused model no longer runs (the
norms, behind InstanceNorm2d too, the activations, and their backward; the convolutions, the
padding, the losses and spectral norm's power iteration stay) as a share of the stock step, and
the speed-up a fused step would reach if they took no time. A lower bound: the composite ops
around the norms (InstanceNorm's reshapes and parameter repeats) are not counted.
Run: python benchmarks/zoo_step_share.py [steps]."""
import sys

from step_share import REPLACED, replaced_share
from test_zoo_steps import SIZE, WIDTH, cyclegan_step, sngan_d_step

if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cases = [(f"CycleGAN-{SIZE} width {WIDTH}, batch {b}, fp32", lambda b=b: cyclegan_step("stock", "fp32", b))
             for b in (1, 4)]
    cases.append(("SN-GAN D-32, batch 64, fp32", lambda: sngan_d_step("stock", "fp32")))
    for name, make in cases:
        replaced, total = replaced_share(make(), steps, REPLACED)
        print(f"{name}: replaced ops {replaced:.1f} ms of {total:.1f} ms per stock step ({replaced / total:.1%}); "
              f"a fused step with those ops free would be {total / (total - replaced):.3f}x stock")
