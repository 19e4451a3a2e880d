// What fastgan's hand-written autograd nodes share (autograd_layers.cpp, autograd_elementwise.cpp):
// creating a node only when a gradient is wanted, saving tensors, refusing forward-mode AD,
// and the differentiable re-run that double backward uses.
#pragma once

#include <c10/core/TensorImpl.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "fastgan.h"
#include "op_list.h"

namespace fastgan {
namespace autograd_support {

using op::Mask3;
using op::OptTensor;
using op::Tensor;
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

inline Tensor value_or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }

// The running statistics are written in place below the autograd key; bump their versions
// as an in-place op would, so autograd can tell if a saved copy of them went stale.
inline void bump_versions(std::initializer_list<const OptTensor*> tensors) {
  for (const OptTensor* t : tensors)
    if (t->has_value() && (*t)->defined()) (*t)->unsafeGetTensorImpl()->bump_version();
}

// Forward-mode AD (torch.func.jvp, dual tensors) has no formula here: refuse it by name
// rather than return a primal with its tangent silently dropped.
template <class... Ts>
void refuse_forward_ad(const char* op, const Ts&... tensors) {
  const bool any = ((tensors.defined() && tensors._fw_grad(/*level=*/0).defined()) || ...);
  TORCH_CHECK_NOT_IMPLEMENTED(!any, "fastgan.", op,
                              ": forward-mode AD (dual tensors, torch.func.jvp) is not "
                              "supported; use reverse mode (backward, torch.autograd.grad)");
}

// How torch owns a graph node is internal and has changed: through std::shared_ptr (Node
// derives from std::enable_shared_from_this) up to torch 2.11 at least, through
// c10::intrusive_ptr in 2.13 and later. Read it off the type itself rather than a version
// number, so a release in between builds whichever way it went; the nodes are the same
// either way.
constexpr bool kNodeOwnedBySharedPtr = std::is_base_of_v<std::enable_shared_from_this<Node>, Node>;
template <class NodeT>
using NodePtr = std::conditional_t<kNodeOwnedBySharedPtr, std::shared_ptr<NodeT>, c10::intrusive_ptr<NodeT>>;

// The node for an op call whose inputs (in the node's gradient order) need a gradient, or
// null when none does or grad mode is off: then no graph is recorded at all.
template <class NodeT, class... Ts>
NodePtr<NodeT> make_node(const Ts&... differentiable_inputs) {
  if (!torch::autograd::compute_requires_grad(differentiable_inputs...)) return {};
  NodePtr<NodeT> node;
  if constexpr (kNodeOwnedBySharedPtr) {
    node = std::make_shared<NodeT>();
  } else {
    node = c10::make_intrusive<NodeT>();
  }
  node->set_next_edges(torch::autograd::collect_next_edges(differentiable_inputs...));
  return node;
}

inline SavedVariable save(const Tensor& t) { return SavedVariable(t, /*is_output=*/false); }
inline SavedVariable save(const OptTensor& t) { return SavedVariable(value_or_undefined(t), /*is_output=*/false); }

// Gradients of out with respect to those inputs that require grad (undefined for the
// others), differentiable themselves.
inline variable_list differentiable_grads(const Tensor& out, const variable_list& inputs, const Tensor& grad_out) {
  variable_list wanted, result(inputs.size());
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      wanted.push_back(inputs[i]);
      where.push_back(i);
    }
  }
  if (wanted.empty()) return result;
  const variable_list grads = torch::autograd::grad({out}, wanted, {grad_out}, /*retain_graph=*/true,
                                                    /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t k = 0; k < where.size(); ++k) result[where[k]] = grads[k];
  return result;
}

// A parameter's gradient in the parameter's dtype.
inline Tensor cast_like(const Tensor& grad, const Tensor& param) {
  if (!param.defined() || !grad.defined()) return Tensor();
  return in_dtype(grad, param.scalar_type());
}

// The activation as the backward ops take it (their schema has a str; names are short
// enough for std::string's inline buffer, so keeping one allocates nothing).
struct ActArgs {
  std::string name;
  double slope = 0;
  Activation act() const { return parse_activation(name); }
};

}  // namespace autograd_support
}  // namespace fastgan
