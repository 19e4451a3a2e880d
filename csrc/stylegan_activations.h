// StyleGAN's bias_act activations (NVlabs' table, torch_utils/ops/bias_act.py): their names,
// default alpha and gain, and each one's forward and derivative, written once for the CPU
// loops and the CUDA kernels. fastgan/stylegan/bias_act.py holds the same table for the
// reference path; tests/test_stylegan_bias_act.py checks the two equal. The derivatives are
// the ones torch's own ops backpropagate (relu's 0 at 0, softplus' threshold of 20), so the
// fused op's gradient is the stock composition's.
#pragma once

#include <cmath>
#include <type_traits>

#include "activations.h"

namespace fastgan {

enum class StyleganAct : int { Linear, Relu, Lrelu, Tanh, Sigmoid, Elu, Selu, Softplus, Swish };

struct StyleganActEntry {
  const char* name;
  StyleganAct act;
  double def_alpha, def_gain;
};
// Sorted by name, as the error lists them.
inline constexpr StyleganActEntry kStyleganActs[] = {
    {"elu", StyleganAct::Elu, 0.0, 1.0},
    {"linear", StyleganAct::Linear, 0.0, 1.0},
    {"lrelu", StyleganAct::Lrelu, 0.2, 1.4142135623730951},
    {"relu", StyleganAct::Relu, 0.0, 1.4142135623730951},
    {"selu", StyleganAct::Selu, 0.0, 1.0},
    {"sigmoid", StyleganAct::Sigmoid, 0.0, 1.0},
    {"softplus", StyleganAct::Softplus, 0.0, 1.0},
    {"swish", StyleganAct::Swish, 0.0, 1.4142135623730951},
    {"tanh", StyleganAct::Tanh, 0.0, 1.0},
};

inline StyleganAct parse_stylegan_act(c10::string_view name) {
  for (const StyleganActEntry& e : kStyleganActs)
    if (name == e.name) return e.act;
  TORCH_CHECK_VALUE(false, "fastgan: bias_act: unknown act '", std::string(name), "'; expected one of ",
                    python_list_of_names(kStyleganActs));
}

template <typename T>
FASTGAN_INLINE T expm1_of(T v) {
#if defined(__CUDA_ARCH__)
  return ::expm1(v);
#else
  return std::expm1(v);
#endif
}

template <typename T>
FASTGAN_INLINE T log1p_of(T v) {
#if defined(__CUDA_ARCH__)
  return ::log1p(v);
#else
  return std::log1p(v);
#endif
}

// SELU's constants (Klambauer et al. 2017), as torch.nn.functional.selu uses them.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus' default threshold: above it softplus(v) is v.
constexpr double kSoftplusThreshold = 20.0;

// act(v) with NVlabs' alpha (lrelu's slope; the other activations ignore it, as NVlabs' do).
// Comparisons are written so that NaN propagates as torch's ops do.
template <StyleganAct A, typename T>
FASTGAN_INLINE T stylegan_act(T v, T alpha) {
  if constexpr (A == StyleganAct::Relu)
    return v < T(0) ? T(0) : v;
  else if constexpr (A == StyleganAct::Lrelu)
    return v > T(0) ? v : v * alpha;
  else if constexpr (A == StyleganAct::Tanh)
    return tanh_of(v);
  else if constexpr (A == StyleganAct::Sigmoid)
    return sigmoid_of(v);
  else if constexpr (A == StyleganAct::Elu)
    return v > T(0) ? v : expm1_of(v);
  else if constexpr (A == StyleganAct::Selu)
    return T(kSeluScale) * (v > T(0) ? v : T(kSeluAlpha) * expm1_of(v));
  else if constexpr (A == StyleganAct::Softplus)
    return v > T(kSoftplusThreshold) ? v : log1p_of(exp_of(v));
  else if constexpr (A == StyleganAct::Swish)
    return v * sigmoid_of(v);
  else
    return v;
}

// d act / d v, as torch's backward of the same op computes it.
template <StyleganAct A, typename T>
FASTGAN_INLINE T stylegan_act_grad(T v, T alpha) {
  if constexpr (A == StyleganAct::Relu)
    return v > T(0) ? T(1) : T(0);
  else if constexpr (A == StyleganAct::Lrelu)
    return v > T(0) ? T(1) : alpha;
  else if constexpr (A == StyleganAct::Tanh) {
    const T t = tanh_of(v);
    return T(1) - t * t;
  } else if constexpr (A == StyleganAct::Sigmoid) {
    const T s = sigmoid_of(v);
    return s * (T(1) - s);
  } else if constexpr (A == StyleganAct::Elu)
    return v > T(0) ? T(1) : exp_of(v);
  else if constexpr (A == StyleganAct::Selu)
    return v > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * exp_of(v);
  else if constexpr (A == StyleganAct::Softplus)
    return v > T(kSoftplusThreshold) ? T(1) : sigmoid_of(v);
  else if constexpr (A == StyleganAct::Swish) {
    const T s = sigmoid_of(v);
    return s + v * s * (T(1) - s);
  } else
    return T(1);
}

// clamp(v, -clamp, clamp) for clamp >= 0 (NaN stays NaN, as torch.clamp), and whether torch's
// clamp passes the gradient at v (-clamp <= v <= clamp). A negative clamp means none.
template <typename T>
FASTGAN_INLINE T clamp_symmetric(T v, T clamp) {
  if (clamp < T(0)) return v;
  return v < -clamp ? -clamp : (v > clamp ? clamp : v);
}
template <typename T>
FASTGAN_INLINE bool clamp_passes(T v, T clamp) {
  return clamp < T(0) || (v >= -clamp && v <= clamp);
}

// The activation decided at run time, inside the element loop: one compiled loop for the six
// activations StyleGAN's networks do not use (its layers call linear and lrelu, and relu is the
// other common one), so each op instantiates 4 loops per dtype instead of 9 (compile time and
// binary size; on the GPU the switch is uniform across a warp and costs a few instructions).
constexpr StyleganAct kRuntimeAct = StyleganAct(-1);

// Calls f(StyleganActTag<A>()) for the activation a names, every one of the table.
template <StyleganAct A>
using StyleganActTag = std::integral_constant<StyleganAct, A>;

template <typename F>
FASTGAN_INLINE decltype(auto) switch_stylegan_act(StyleganAct a, F&& f) {
  switch (a) {
    case StyleganAct::Relu: return f(StyleganActTag<StyleganAct::Relu>());
    case StyleganAct::Lrelu: return f(StyleganActTag<StyleganAct::Lrelu>());
    case StyleganAct::Tanh: return f(StyleganActTag<StyleganAct::Tanh>());
    case StyleganAct::Sigmoid: return f(StyleganActTag<StyleganAct::Sigmoid>());
    case StyleganAct::Elu: return f(StyleganActTag<StyleganAct::Elu>());
    case StyleganAct::Selu: return f(StyleganActTag<StyleganAct::Selu>());
    case StyleganAct::Softplus: return f(StyleganActTag<StyleganAct::Softplus>());
    case StyleganAct::Swish: return f(StyleganActTag<StyleganAct::Swish>());
    default: return f(StyleganActTag<StyleganAct::Linear>());
  }
}

template <typename T>
FASTGAN_INLINE T stylegan_act_runtime(StyleganAct a, T v, T alpha) {
  return switch_stylegan_act(a, [&](auto tag) { return stylegan_act<decltype(tag)::value>(v, alpha); });
}

template <typename T>
FASTGAN_INLINE T stylegan_act_grad_runtime(StyleganAct a, T v, T alpha) {
  return switch_stylegan_act(a, [&](auto tag) { return stylegan_act_grad<decltype(tag)::value>(v, alpha); });
}

// act(v) and act'(v) for a loop compiled for A (kRuntimeAct: the activation `a` names).
template <StyleganAct A, typename T>
FASTGAN_INLINE T stylegan_act_of(StyleganAct a, T v, T alpha) {
  if constexpr (A == kRuntimeAct)
    return stylegan_act_runtime(a, v, alpha);
  else
    return stylegan_act<A>(v, alpha);
}
template <StyleganAct A, typename T>
FASTGAN_INLINE T stylegan_act_grad_of(StyleganAct a, T v, T alpha) {
  if constexpr (A == kRuntimeAct)
    return stylegan_act_grad_runtime(a, v, alpha);
  else
    return stylegan_act_grad<A>(v, alpha);
}

// The one switch from a runtime activation to the loop compiled for it (outside element loops).
template <typename F>
FASTGAN_INLINE decltype(auto) dispatch_stylegan_act(StyleganAct a, F&& f) {
  switch (a) {
    case StyleganAct::Linear: return f(StyleganActTag<StyleganAct::Linear>());
    case StyleganAct::Relu: return f(StyleganActTag<StyleganAct::Relu>());
    case StyleganAct::Lrelu: return f(StyleganActTag<StyleganAct::Lrelu>());
    default: return f(StyleganActTag<kRuntimeAct>());
  }
}

// The same activations as differentiable ATen ops, for the double backward.
inline at::Tensor stylegan_act_tensor(StyleganAct a, const at::Tensor& v, double alpha) {
  switch (a) {
    case StyleganAct::Relu: return at::relu(v);
    case StyleganAct::Lrelu: return at::leaky_relu(v, alpha);
    case StyleganAct::Tanh: return at::tanh(v);
    case StyleganAct::Sigmoid: return at::sigmoid(v);
    case StyleganAct::Elu: return at::elu(v);
    case StyleganAct::Selu: return at::selu(v);
    case StyleganAct::Softplus: return at::softplus(v);
    case StyleganAct::Swish: return v * at::sigmoid(v);
    default: return v;
  }
}

}  // namespace fastgan
