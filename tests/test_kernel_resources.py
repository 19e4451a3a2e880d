"""The CUDA kernels' resources as ptxas reports them: no spills (each is a trip to local memory,
in an element loop one per element), and registers that let as many 256-thread blocks be
resident per multiprocessor as the grid planners count on (common.cuh: kBlocksPerSm = 4, 3 for the fp64
BatchNorm kernels, each kernel's __launch_bounds__ the same). The parser is tested on a fixed
report; the limits on the real build's report, which CI's CUDA job writes (FASTGAN_PTXAS_LOG)."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import kernel_resources  # noqa: E402

SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z6kernelv' for 'sm_80'
ptxas info    : Function properties for _Z6kernelv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z6kernelv' for 'sm_90'
ptxas info    : Function properties for _Z6kernelv
    16 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 96 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z7spillerv' for 'sm_90'
ptxas info    : Function properties for _Z7spillerv
    16 bytes stack frame, 20 bytes spill stores, 28 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 16 bytes cumulative stack size, 16641 bytes smem
"""

BATCH_NORM_KERNELS = ("stats_kernel", "apply_kernel", "backward_reduce_kernel", "backward_input_kernel")


def planned_blocks_per_sm(name):
    """What the grid planners assume for this kernel (common.cuh's kBlocksPerSmOf)."""
    short = kernel_resources.short(name)
    return 3 if short.startswith(BATCH_NORM_KERNELS) and "<double," in short else 4


def test_the_parser_reads_a_ptxas_report():
    k, spiller = kernel_resources.parse(SAMPLE, "sm_90")
    assert (k["registers"], k["stack"], k["spill_stores"], k["spill_loads"], k["smem"]) == (72, 16, 4, 8, 96)
    # A kernel with a stack frame has its "cumulative stack size" between the barriers and the
    # shared memory (the table used to show 0 bytes of shared memory for every such kernel).
    assert (spiller["registers"], spiller["spill_stores"], spiller["spill_loads"], spiller["smem"]) == (64, 20, 28,
                                                                                                         16641)
    assert kernel_resources.parse(SAMPLE, "sm_80")[0]["registers"] == 30


@pytest.mark.parametrize("registers, blocks", [(32, 8), (40, 6), (64, 4), (65, 3), (128, 2), (255, 1)])
def test_blocks_per_multiprocessor(registers, blocks):
    assert kernel_resources.blocks_per_sm(registers) == blocks


@pytest.mark.skipif(not os.environ.get("FASTGAN_PTXAS_LOG"),
                    reason="needs a CUDA build's ptxas report (FASTGAN_PTXAS_LOG; CI's CUDA job sets it)")
def test_every_kernel_fits_its_launch():
    kernels = kernel_resources.parse(Path(os.environ["FASTGAN_PTXAS_LOG"]).read_text(errors="replace"), "sm_90")
    assert kernels, "the log holds no sm_90 ptxas report"
    names = kernel_resources.demangle([k["kernel"] for k in kernels])
    problems = []
    for k, name in zip(kernels, names):
        if k["spill_stores"] or k["spill_loads"]:
            problems.append(f"{name}: spills ({k['spill_stores']} bytes stored, {k['spill_loads']} loaded; a "
                            f"{k['stack']}-byte stack frame)")
        if kernel_resources.blocks_per_sm(k["registers"]) < planned_blocks_per_sm(name):
            problems.append(f"{name}: {k['registers']} registers, fewer than {planned_blocks_per_sm(name)} blocks "
                            "of 256 threads per SM")
    assert not problems, "\n".join(problems)
