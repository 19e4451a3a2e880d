"""fastgan builds against every torch it declares only if it stays off torch's internals, which
change without notice between releases (torch::autograd::Node went from std::shared_ptr to
c10::intrusive_ptr ownership in 2.13 and broke the build on 2.11). So every torch-internal
header that csrc/ includes is listed here with the reason it buys; a new one fails this test
until it is listed, and CI builds the oldest declared torch and 2.11 to prove it still works."""
import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"

# Not part of torch's stable extension API (torch/library.h, torch/extension.h, torch/autograd.h,
# ATen, c10's public types): torch's own sources, dispatcher and key-set implementation details.
INTERNAL = re.compile(r"^(torch/csrc/|c10/core/impl/|ATen/core/dispatch/|ATen/native/|.*/detail/)")

# header -> why fastgan uses it (and where).
ALLOWED = {
    "torch/csrc/autograd/function.h":
        "autograd_support.h: torch::autograd::Node, the base of fastgan's hand-written graph nodes, which cost less "
        "host time per call than torch::autograd::Function. How a Node is owned changed in torch 2.13; "
        "NodePtr reads it off the type.",
    "torch/csrc/autograd/functions/utils.h":
        "autograd_support.h: compute_requires_grad, collect_next_edges and set_history, to record those nodes.",
    "ATen/core/dispatch/Dispatcher.h":
        "op_list.h: typed handles to fastgan's own ops, looked up once, so C++ calls skip the name lookup.",
    "c10/core/impl/LocalDispatchKeySet.h":
        "layers.cpp: the autocast kernels exclude the Autocast keys around the inner call, as ATen's own "
        "autocast wrappers do.",
}


def included_headers():
    """{header: [file, ...]} for every #include <...> under csrc/."""
    found = {}
    for path in sorted(CSRC.rglob("*")):
        if path.suffix not in {".h", ".cpp", ".cu", ".cuh"}:
            continue
        for header in re.findall(r"^\s*#\s*include\s*<([^>]+)>", path.read_text(), flags=re.M):
            found.setdefault(header, []).append(str(path.relative_to(CSRC)))
    return found


def test_every_torch_internal_header_is_listed_with_its_reason():
    internal = {h: files for h, files in included_headers().items() if INTERNAL.match(h)}
    unlisted = {h: files for h, files in internal.items() if h not in ALLOWED}
    assert not unlisted, (f"torch-internal headers not in ALLOWED (they may break the build on another torch "
                          f"release; use the stable API, or list them with the reason and build the oldest "
                          f"declared torch): {unlisted}")


def test_the_list_has_no_stale_entries():
    stale = sorted(set(ALLOWED) - set(included_headers()))
    assert not stale, f"listed in ALLOWED but no longer included: {stale}"


def test_the_rule_recognises_internal_headers():
    assert INTERNAL.match("torch/csrc/autograd/variable.h") and INTERNAL.match("ATen/native/cpu/Loops.h")
    assert not INTERNAL.match("torch/library.h") and not INTERNAL.match("ATen/ATen.h")
