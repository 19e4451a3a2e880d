"""The one place a Python function picks its path: the compiled op where fastgan._C serves the
input's device (its direct entry point `fastgan._C.<op>` in eager mode, which skips torch.ops'
argument parsing; the OpOverload `torch.ops.fastgan.<op>.default` under torch.compile, which
traces it), else the stock-op reference of the same schema, which runs the checks itself. Both
take the schema's arguments in the schema's order (csrc/op_list.inc)."""
from typing import Callable

import torch

from . import _backend
from ._backend import fast_path, fused_for

_compiling = torch.compiler.is_compiling


def run(op: str, reference: Callable, *args):
    """op's result for args (the schema's arguments; args[0] is the tensor whose device decides):
    the op's first output (the ops that return saved tensors for their backward return the
    user's result first), from the compiled op or from reference(*args)."""
    if fast_path(args[0]) or fused_for(args[0]):  # fused_for: the slow no, which says why once
        if _compiling():
            out = getattr(torch.ops.fastgan, op).default(*args)
            return out[0] if isinstance(out, tuple) else out
        return getattr(_backend._C, op)(*args)
    return reference(*args)
