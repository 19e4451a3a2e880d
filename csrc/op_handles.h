// Typed handles to the fastgan ops, for C++ code that calls one op from another (the layer
// ops, the autograd kernels, the autocast kernels). A call through a handle goes through the
// dispatcher, so each op still runs the kernel of its device and dispatch keys.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ATen.h>

#include <array>
#include <tuple>

namespace fastgan {
namespace op {

using Tensor = at::Tensor;
using OptTensor = c10::optional<at::Tensor>;
using Tensors2 = std::tuple<Tensor, Tensor>;
using Tensors3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensors4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using Tensors5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;
using Mask3 = std::array<bool, 3>;

using BatchNormActSig = Tensors3(const Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                 const OptTensor&, const OptTensor&, bool, c10::optional<double>, double,
                                 c10::string_view, double);
using BatchNormActBackwardSig = Tensors3(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                         const Tensor&, const Tensor&, bool, double, c10::string_view, double);
using ActivationSig = Tensor(const Tensor&, c10::string_view, double);
using ActivationBackwardSig = Tensor(const Tensor&, const Tensor&, c10::string_view, double);
using BiasActSig = Tensor(const Tensor&, const Tensor&, c10::string_view, double);
using BiasActBackwardSig = Tensors2(const Tensor&, const Tensor&, c10::string_view, double);
using BceWithLogitsSig = Tensors2(const Tensor&, const OptTensor&, double, int64_t);
using LogitLossSig = Tensors2(const Tensor&, double, c10::string_view, int64_t);
using ConvBnActSig = Tensors4(const Tensor&, const Tensor&, const OptTensor&, at::IntArrayRef, at::IntArrayRef,
                              at::IntArrayRef, bool, at::IntArrayRef, int64_t, const OptTensor&, const OptTensor&,
                              const OptTensor&, const OptTensor&, const OptTensor&, bool, c10::optional<double>,
                              double, c10::string_view, double);
using ConvBnActBackwardSig = Tensors5(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                      const OptTensor&, const Tensor&, const Tensor&, at::IntArrayRef,
                                      at::IntArrayRef, at::IntArrayRef, bool, at::IntArrayRef, int64_t, bool, double,
                                      c10::string_view, double, Mask3);
using ConvActSig = Tensor(const Tensor&, const Tensor&, const OptTensor&, at::IntArrayRef, at::IntArrayRef,
                          at::IntArrayRef, bool, at::IntArrayRef, int64_t, c10::string_view, double);
using ConvActBackwardSig = Tensors3(const Tensor&, const Tensor&, const Tensor&, const Tensor&, at::IntArrayRef,
                                    at::IntArrayRef, at::IntArrayRef, bool, at::IntArrayRef, int64_t,
                                    c10::string_view, double, Mask3);

using LinearActSig = Tensor(const Tensor&, const Tensor&, const OptTensor&, c10::string_view, double);
using LinearActBackwardSig = Tensors3(const Tensor&, const Tensor&, const Tensor&, const Tensor&, c10::string_view,
                                      double, Mask3);

// Looked up once, on first use.
#define FASTGAN_OP_HANDLE(fn, name, Sig)                                                    \
  inline const c10::TypedOperatorHandle<Sig>& fn() {                                        \
    static const auto handle =                                                              \
        c10::Dispatcher::singleton().findSchemaOrThrow("fastgan::" name, "").typed<Sig>(); \
    return handle;                                                                          \
  }

FASTGAN_OP_HANDLE(batch_norm_act, "batch_norm_act", BatchNormActSig)
FASTGAN_OP_HANDLE(batch_norm_act_backward, "batch_norm_act_backward", BatchNormActBackwardSig)
FASTGAN_OP_HANDLE(activation, "activation", ActivationSig)
FASTGAN_OP_HANDLE(activation_backward, "activation_backward", ActivationBackwardSig)
FASTGAN_OP_HANDLE(bias_act, "bias_act", BiasActSig)
FASTGAN_OP_HANDLE(bias_act_backward, "bias_act_backward", BiasActBackwardSig)
FASTGAN_OP_HANDLE(bce_with_logits, "bce_with_logits", BceWithLogitsSig)
FASTGAN_OP_HANDLE(logit_loss, "logit_loss", LogitLossSig)
FASTGAN_OP_HANDLE(conv_bn_act, "conv_bn_act", ConvBnActSig)
FASTGAN_OP_HANDLE(conv_bn_act_backward, "conv_bn_act_backward", ConvBnActBackwardSig)
FASTGAN_OP_HANDLE(conv_act, "conv_act", ConvActSig)
FASTGAN_OP_HANDLE(conv_act_backward, "conv_act_backward", ConvActBackwardSig)
FASTGAN_OP_HANDLE(linear_act, "linear_act", LinearActSig)
FASTGAN_OP_HANDLE(linear_act_backward, "linear_act_backward", LinearActBackwardSig)

#undef FASTGAN_OP_HANDLE

}  // namespace op
}  // namespace fastgan
