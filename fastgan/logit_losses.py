"""The Python side's tables of the loss ops: the logit losses, kind -> the loss of each logit x
against the target value t in stock ops (csrc/logit_losses.h holds the kernels' formulas), and
the reductions, name -> the schemas' int; tests/test_op_contract.py holds both equal to the
compiled module's. hinge and linear use the side s = 2t - 1 (+1 real, -1 fake)."""
import torch
import torch.nn.functional as F

LOGIT_LOSSES = {
    "bce": lambda x, t: F.binary_cross_entropy_with_logits(x, torch.full_like(x, t), reduction="none"),
    "hinge": lambda x, t: torch.relu(1.0 - (2.0 * t - 1.0) * x),
    "linear": lambda x, t: -(2.0 * t - 1.0) * x,
    "lsgan": lambda x, t: 0.5 * (x - t).square(),
}

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
