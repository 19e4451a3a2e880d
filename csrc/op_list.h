// What is derived from the op list (op_list.inc): the schemas' registration, the signature
// types op::sig::<name>, and the typed handles op::<name>() for C++ code that calls one op
// from another (the layer ops, the autograd and autocast kernels, the eager entry points). A
// call through a handle goes through the dispatcher, so each op still runs the kernel of its
// device and dispatch keys.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <array>
#include <tuple>

namespace fastgan {
namespace op {

using at::IntArrayRef;
using Tensor = at::Tensor;
using OptTensor = c10::optional<at::Tensor>;
using Tensors2 = std::tuple<Tensor, Tensor>;
using Tensors3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensors4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using Tensors5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;
using Mask3 = std::array<bool, 3>;

enum class Library { kernel, layer };
enum class Entry { eager, dispatcher };

namespace sig {
#define FASTGAN_OP(library, entry, name, schema, ...) using name = __VA_ARGS__;
#include "op_list.inc"
}  // namespace sig

// Looked up once, on first use.
#define FASTGAN_OP(library, entry, name, schema, ...)                                             \
  inline const c10::TypedOperatorHandle<sig::name>& name() {                                      \
    static const auto handle =                                                                    \
        c10::Dispatcher::singleton().findSchemaOrThrow("fastgan::" #name, "").typed<sig::name>(); \
    return handle;                                                                                \
  }
#include "op_list.inc"

// The kernel ops' schemas, or (with_layers) every op's: the emulated CUDA library defines
// only the former, under its own namespace.
inline void define_ops(torch::Library& m, bool with_layers) {
#define FASTGAN_OP(library, entry, name, schema, ...) \
  if (with_layers || Library::library == Library::kernel) m.def(schema);
#include "op_list.inc"
}

}  // namespace op
}  // namespace fastgan
