"""fuse() for modules whose forward() calls their layers one by one, e.g.
`x = F.relu(self.bn(self.conv(x)))`: the forward is traced with torch.fx, each chain

    conv | ConvTranspose2d -> BatchNorm2d | SyncBatchNorm -> activation (or none)
    conv | ConvTranspose2d -> activation
    conv | ConvTranspose2d -> InstanceNorm2d -> activation (or none)
    Linear -> BatchNorm1d -> activation (or none)      Linear -> activation
    BatchNorm2d | BatchNorm1d | InstanceNorm2d -> activation (or none)

whose intermediate results have no other use becomes one call of fuse.py's fused function on
the very same modules, and the traced forward is set on the module instance. Its class,
children, parameters and state_dict stay as they were; unfuse() removes the traced forward. The
activation is a ReLU / LeakyReLU / Tanh / Sigmoid module or F.relu, F.leaky_relu, torch.relu,
torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, x.relu(), x.tanh(), x.sigmoid().

A forward that torch.fx cannot trace (control flow on tensor values, say), or whose graph differs
between training and eval mode, keeps its own forward; fuse then traces its children the same
way, and reports the module that stayed as written. Other Python attributes a forward branches on
are read once, when fuse traces it: change them before fuse(), or call fuse() again.
A traced forward calls the modules the model held at fuse() time: replace a submodule, and
call fuse() again."""
import sys

import torch
import torch.nn.functional as F
from torch import fx, nn

from .activations import activation_of
from .sync_batch_norm import SYNC_BATCH_NORMS

# The submodule fastgan/fuse.py (the package's `fuse` attribute is the function of that name).
_fuse = sys.modules[__package__ + ".fuse"]

_MARK = "_fastgan_traced"  # in a traced module's __dict__: its TracedForward
_CHAINS = "_fastgan_chains"  # and the chains fused in it
_FUNCTIONAL = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh", F.leaky_relu: "leaky_relu",
               torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
_METHODS = {name + inplace: name for name in ("relu", "tanh", "sigmoid") for inplace in ("", "_")}


class _Tracer(fx.Tracer):
    """torch.nn's modules are leaves (fx's default), and so is a FusedSequential (already fused)."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, _fuse.FusedSequential) or super().is_leaf_module(m, qualname)


def _only_input(node, source):
    """Whether node's sole tensor input is source (other arguments constants)."""
    return bool(node.args) and node.args[0] is source and not any(
        isinstance(a, fx.Node) for a in (*node.args[1:], *node.kwargs.values()))


def _activation(node, source, modules):
    """(name, last) if node is an activation fuse runs applied to source alone, else None;
    last is the module, or (name, slope) for a functional activation."""
    if not _only_input(node, source):
        return None
    if node.op == "call_module":
        found = activation_of(modules[node.target]) if _fuse.unhooked(modules[node.target]) else None
        return None if found is None else (found[0], modules[node.target])
    if node.op == "call_function" and node.target in _FUNCTIONAL:
        name = _FUNCTIONAL[node.target]
        slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
        slope = float(slope) if name == "leaky_relu" else 0.0
        return name, (name, slope)
    if node.op == "call_method" and node.target in _METHODS:
        name = _METHODS[node.target]
        return name, (name, 0.0)
    return None


def _next(node):
    """The one node using node's result, or None when it has no or several uses."""
    return next(iter(node.users)) if len(node.users) == 1 else None


def _chain_at(node, modules):
    """(kind, module nodes, activation node or None, activation name, last) of the chain that
    starts at node, or None."""
    if node.op != "call_module":
        return None
    m = modules[node.target]
    follow = _next(node)
    # A chain's first module is called with its input alone (a ConvTranspose2d's output_size, a
    # constant fx keeps beside it, would be dropped).
    if len(node.args) != 1 or node.kwargs:
        return None
    if (_fuse._conv_before_instance_norm(m) and follow is not None and follow.op == "call_module"
            and type(modules[follow.target]) is nn.InstanceNorm2d and _fuse.unhooked(modules[follow.target])
            and _only_input(follow, node)):
        after = _next(follow)
        act = _activation(after, follow, modules) if after is not None else None
        return ("conv_in_act", [node, follow], after if act else None, *(act or ("identity", None)))
    if _fuse._fusable_conv(m) or _fuse._fusable_linear(m):
        conv = _fuse._fusable_conv(m)
        norm_types = (nn.BatchNorm2d, *SYNC_BATCH_NORMS) if conv else (nn.BatchNorm1d,)
        if (follow is not None and follow.op == "call_module" and type(modules[follow.target]) in norm_types
                and _fuse.unhooked(modules[follow.target]) and _only_input(follow, node)):
            after = _next(follow)
            act = _activation(after, follow, modules) if after is not None else None
            kind = "conv_bn_act" if conv else "linear_bn_act"
            return (kind, [node, follow], after if act else None, *(act or ("identity", None)))
        act = _activation(follow, node, modules) if follow is not None else None
        if act is not None and not (act[0] == "leaky_relu" and _fuse._slope(act[1]) < 0):
            return ("conv_act" if conv else "linear_act", [node], follow, *act)
        return None
    if type(m) in (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d) and _fuse.unhooked(m):
        act = _activation(follow, node, modules) if follow is not None else None
        kind = "in_act" if type(m) is nn.InstanceNorm2d else "bn_act"
        return (kind, [node], follow if act else None, *(act or ("identity", None)))
    return None


def fuse_chains(graph, modules):
    """Rewrites graph in place; returns the chains fused, each (kind, module names, activation)."""
    fused = []
    for node in list(graph.nodes):
        if node._erased:  # taken into a chain fused above
            continue
        chain = _chain_at(node, modules)
        if chain is None:
            continue
        kind, module_nodes, act_node, activation, last = chain
        end = act_node if act_node is not None else module_nodes[-1]
        with graph.inserting_before(end):
            attrs = tuple(graph.get_attr(n.target) for n in module_nodes)
            last_arg = graph.get_attr(act_node.target) if act_node is not None and act_node.op == "call_module" \
                else last
            call = graph.call_function(_fuse.run_chain, (kind, attrs, last_arg, activation, module_nodes[0].args[0]))
        end.replace_all_uses_with(call)
        for n in reversed([*module_nodes, *([act_node] if act_node is not None else [])]):
            graph.erase_node(n)
        fused.append((kind, [n.target for n in module_nodes], activation))
    return fused


def fuse_traced(module, report):
    """Traces module's forward and fuses its chains; where tracing fails, its children in turn.
    Appends (module path, what happened, whether to warn) to report: a warning where a forward
    that could not be traced calls conv, linear or norm layers of its own."""
    _visit(module, "", report)


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)


def _visit(module, path, report):
    if _MARK in module.__dict__:
        return  # a module used in several places: traced once
    if isinstance(module, _CONTAINERS) or type(module).forward is nn.Module.forward:
        # Sequential runs are fuse.py's, and their items may be anything; a module with no
        # forward of its own (a holder of parameters) has only children to visit.
        _visit_children(module, path, report)
        return
    if _is_torch_leaf(module):
        return
    try:
        graph, chains = _fused_graph(module)
    except Exception as error:  # any failure of symbolic tracing: the module keeps its forward
        # Worth a warning only when the forward calls layers fuse could have run itself.
        loses = any(isinstance(c, _LAYERS) for c in module.children())
        report.append((path or type(module).__name__, f"forward not traceable ({type(error).__name__}: "
                       f"{str(error).splitlines()[0][:120]}); its children were traced instead", loses))
        _visit_children(module, path, report)
        return
    # The graph inlines every module it calls but the leaves; a FusedSequential leaf's items
    # still need a visit of their own.
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(module.get_submodule(node.target), _fuse.FusedSequential):
            _visit(module.get_submodule(node.target), ".".join(filter(None, [path, node.target])), report)
    if not chains:
        return
    traced = TracedForward(module, _graph_module(module, graph))
    module.__dict__[_MARK] = traced
    module.__dict__[_CHAINS] = [(kind, names) for kind, names, _ in chains]
    module.__dict__["forward"] = traced  # the instance's forward; the class keeps its own
    for kind, names, activation in chains:
        where = ".".join(filter(None, [path, names[0]]))
        report.append((where, f"fused: {' -> '.join(names)}{'' if activation == 'identity' else ' -> ' + activation}"
                              f" ({kind})", False))


def _visit_children(module, path, report):
    for name, child in module.named_children():
        _visit(child, f"{path}.{name}" if path else name, report)


def _fused_graph(module):
    """(graph, chains): module's forward traced in both modes, its chains fused in the graph.
    Raises what tracing raises."""
    graph = _trace_both_modes(module)
    return graph, fuse_chains(graph, dict(module.named_modules()))


class _DependsOnMode(Exception):
    pass


def _trace_both_modes(module):
    """The graph of module's forward, traced in training and in eval mode. Tracing runs the
    forward's Python with the attributes of the moment, so a forward that branches on
    self.training would be frozen in one mode: when the two graphs differ, it is not traced."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        graphs = []
        for training in (True, False):
            module.train(training)
            graphs.append(_Tracer().trace(module))
    finally:
        for m, training in modes:
            m.training = training
    if str(graphs[0]) != str(graphs[1]):
        raise _DependsOnMode("its Python branches on the training mode")
    return graphs[0]


def _is_torch_leaf(module):
    return type(module).__module__.startswith("torch.nn")


def _graph_module(module, graph):
    graph.lint()
    return fx.GraphModule(module, graph, class_name=f"{type(module).__name__}Fused")


class TracedForward:
    """The fused forward set on a module instance: its fx graph's code, on the module's own
    submodules. A copy or a pickle keeps only the module; the graph is made again from the
    module (the same trace and chains) at its first call, so a deepcopy'd or loaded model runs
    its own submodules (fx's own pickling of a GraphModule traces its code again, which fused
    calls do not allow)."""

    def __init__(self, module, graph_module=None):
        self.module, self.graph_module = module, graph_module

    def __call__(self, *args, **kwargs):
        if self.graph_module is None:
            self.graph_module = _graph_module(self.module, _fused_graph(self.module)[0])
        return self.graph_module.forward(*args, **kwargs)

    def __getstate__(self):
        return {"module": self.module}

    def __setstate__(self, state):
        self.module, self.graph_module = state["module"], None


def traced_chains(module):
    """(kind, module names relative to module) of each chain fused in module's traced forward."""
    return module.__dict__.get(_CHAINS, [])


def unfuse_traced(module):
    """Removes the traced forward fuse_traced set on module, if any."""
    if module.__dict__.pop(_MARK, None) is not None:
        module.__dict__.pop("forward", None)
        module.__dict__.pop(_CHAINS, None)


