// The op schemas: the single source of truth for every fastgan op (the kernel ops' are in
// schemas.h, shared with the test-only emulated CUDA library). CPU and CUDA kernels
// register implementations under the same names in cpu/ and cuda/; the layer ops are
// composed once for every device in layers.cpp; autograd is registered once, in C++
// (autograd_layers.cpp, autograd_elementwise.cpp), and the fake kernels in fastgan/_ops.py.
#include <torch/extension.h>

#include "cpu/kernel_table.h"
#include "op_handles.h"
#include "schemas.h"

#include <string>

#ifndef FASTGAN_CUDA_ARCH_LIST
#define FASTGAN_CUDA_ARCH_LIST ""
#endif

TORCH_LIBRARY(fastgan, m) {
  fastgan::define_kernel_ops(m);
  // The fused layers, one dispatcher call each: convolution (ATen: oneDNN / cuDNN) then
  // BatchNorm + activation, or the activation alone. conv_bn_act returns (output,
  // convolution output, saved mean, saved biased variance); the last three are what its
  // backward reads. The backward ops compute the convolution's gradients where
  // output_mask (input, weight, conv bias) asks for them and return undefined elsewhere.
  m.def(
      "conv_bn_act(Tensor input, Tensor weight, Tensor? conv_bias, int[] stride, int[] padding, "
      "int[] dilation, bool transposed, int[] output_padding, int groups, Tensor? bn_weight, Tensor? bn_bias, "
      "Tensor(a!)? running_mean, Tensor(b!)? running_var, Tensor(c!)? num_batches_tracked, bool training, "
      "float? momentum, float eps, str activation, float negative_slope) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "conv_bn_act_backward(Tensor grad_out, Tensor input, Tensor weight, Tensor conv_out, Tensor? bn_weight, "
      "Tensor? bn_bias, Tensor save_mean, Tensor save_var, int[] stride, int[] padding, int[] dilation, "
      "bool transposed, int[] output_padding, int groups, bool batch_stats, float eps, str activation, "
      "float negative_slope, bool[3] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "conv_act(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
      "bool transposed, int[] output_padding, int groups, str activation, float negative_slope) -> Tensor");
  m.def(
      "conv_act_backward(Tensor grad_out, Tensor input, Tensor weight, Tensor output, int[] stride, "
      "int[] padding, int[] dilation, bool transposed, int[] output_padding, int groups, str activation, "
      "float negative_slope, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // activation(linear(input, weight, bias)): the matrix product (with its bias) through ATen
  // (BLAS / cuBLAS), then the activation kernel; the backward recomputes nothing.
  m.def("linear_act(Tensor input, Tensor weight, Tensor? bias, str activation, float negative_slope) -> Tensor");
  m.def(
      "linear_act_backward(Tensor grad_out, Tensor input, Tensor weight, Tensor output, str activation, "
      "float negative_slope, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

static pybind11::dict build_info() {
  pybind11::dict info;
#ifdef FASTGAN_WITH_CUDA
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  info["cuda_arch_list"] = std::string(FASTGAN_CUDA_ARCH_LIST);
  info["torch_version"] = std::string(TORCH_VERSION);
  // Whether at::parallel_for spreads the CPU kernels' loops over torch's threads (it needs
  // OpenMP at compile time; without it every loop runs on the calling thread).
#ifdef _OPENMP
  info["cpu_parallel"] = true;
#else
  info["cpu_parallel"] = false;
#endif
  return info;
}

// Eager entry points: the same ops called through their typed dispatcher handles. A call
// through torch.ops parses its arguments against the schema in Python-facing C++ and costs
// about 5 us; these cost about 1 us, which on a GPU is a large part of a layer's host time.
// torch.compile traces torch.ops instead (fastgan/functional.py picks).
void bind_eager_ops(pybind11::module& m) {
  using namespace fastgan;
  using OptT = c10::optional<at::Tensor>;
  const auto no_gil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def(
      "conv_bn_act",
      [](const at::Tensor& input, const at::Tensor& weight, const OptT& conv_bias, at::IntArrayRef stride,
         at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
         int64_t groups, const OptT& bn_weight, const OptT& bn_bias, const OptT& running_mean, const OptT& running_var,
         const OptT& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
         const std::string& activation, double negative_slope) {
        return std::get<0>(op::conv_bn_act().call(input, weight, conv_bias, stride, padding, dilation, transposed,
                                                  output_padding, groups, bn_weight, bn_bias, running_mean,
                                                  running_var, num_batches_tracked, training, momentum, eps,
                                                  activation, negative_slope));
      },
      no_gil);
  m.def(
      "conv_act",
      [](const at::Tensor& input, const at::Tensor& weight, const OptT& bias, at::IntArrayRef stride,
         at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed, at::IntArrayRef output_padding,
         int64_t groups, const std::string& activation, double negative_slope) {
        return op::conv_act().call(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups,
                                   activation, negative_slope);
      },
      no_gil);
  m.def(
      "linear_act",
      [](const at::Tensor& input, const at::Tensor& weight, const OptT& bias, const std::string& activation,
         double negative_slope) { return op::linear_act().call(input, weight, bias, activation, negative_slope); },
      no_gil);
  m.def(
      "batch_norm_act",
      [](const at::Tensor& input, const OptT& weight, const OptT& bias, const OptT& running_mean,
         const OptT& running_var, const OptT& num_batches_tracked, bool training, c10::optional<double> momentum,
         double eps, const std::string& activation, double negative_slope) {
        return std::get<0>(op::batch_norm_act().call(input, weight, bias, running_mean, running_var,
                                                     num_batches_tracked, training, momentum, eps, activation,
                                                     negative_slope));
      },
      no_gil);
  m.def(
      "activation",
      [](const at::Tensor& input, const std::string& activation, double negative_slope) {
        return op::activation().call(input, activation, negative_slope);
      },
      no_gil);
  m.def(
      "logit_loss",
      [](const at::Tensor& input, double target, const std::string& kind, int64_t reduction) {
        return std::get<0>(op::logit_loss().call(input, target, kind, reduction));
      },
      no_gil);
  m.def(
      "bce_with_logits",
      [](const at::Tensor& input, const OptT& target, double target_value, int64_t reduction) {
        return std::get<0>(op::bce_with_logits().call(input, target, target_value, reduction));
      },
      no_gil);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan compiled kernels; the ops live in torch.ops.fastgan";
  m.def("build_info", &build_info, "How this module was built");
  m.def("cpu_capability", &fastgan::cpu::capability, "The instruction set the CPU kernels run with");
  m.def("set_cpu_capability", &fastgan::cpu::set_capability,
        "Run the CPU kernels with 'default' (baseline) or 'avx2' instructions (for tests)");
  bind_eager_ops(m);
}
