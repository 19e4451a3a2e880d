// The one table of activations the compiled kernels use. Its names are the keys of
// fastgan/activations.py, which holds the same table for the reference path, so a name
// means the same function on both paths. Each activation's forward and derivatives are
// written once below (activate_t & co.), and the CPU loops and the CUDA kernels both
// instantiate them per activation.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

// Inlined into the caller on host and device: a call inside a loop stops the compiler from
// vectorising it.
#if defined(__CUDACC__)
#define FASTGAN_INLINE __host__ __device__ __forceinline__
#else
#define FASTGAN_INLINE C10_ALWAYS_INLINE
#endif

namespace fastgan {

enum class Activation : int { Identity = 0, ReLU = 1, LeakyReLU = 2, Tanh = 3, Sigmoid = 4 };

// The one C++ table of activations: each name as fastgan/activations.py spells it (sorted, as
// the error below lists them), and the stock module it stands for in a layer's name.
// fastgan._C.activations() exports it; tests/test_op_contract.py checks it against
// activations.py's ACTIVATIONS.
struct ActivationEntry {
  const char* name;
  Activation act;
  const char* module;
};
inline constexpr ActivationEntry kActivations[] = {{"identity", Activation::Identity, ""},
                                                   {"leaky_relu", Activation::LeakyReLU, "LeakyReLU"},
                                                   {"relu", Activation::ReLU, "ReLU"},
                                                   {"sigmoid", Activation::Sigmoid, "Sigmoid"},
                                                   {"tanh", Activation::Tanh, "Tanh"}};

// "['a', 'b']": the names of a table as Python prints a sorted list of them, for the errors
// that must read as the reference path's.
template <class Entry, size_t N>
std::string python_list_of_names(const Entry (&table)[N]) {
  std::string out = "[";
  for (size_t i = 0; i < N; ++i) out += std::string(i ? ", '" : "'") + table[i].name + "'";
  return out + "]";
}

inline Activation parse_activation(c10::string_view name) {
  for (const ActivationEntry& e : kActivations)
    if (name == e.name) return e.act;
  // Worded as fastgan/activations.py words it (a ValueError on both paths).
  TORCH_CHECK_VALUE(false, "fastgan: unknown activation '", std::string(name), "'; expected one of ",
                    python_list_of_names(kActivations));
}

inline const char* activation_module_name(Activation a) {
  for (const ActivationEntry& e : kActivations)
    if (e.act == a) return e.module;
  return "";
}

// x*s + b written once so that forward and backward compute the pre-activation with the
// same rounding: the backward recomputes the ReLU mask from it instead of storing one.
template <typename T>
FASTGAN_INLINE T affine(T x, T s, T b) {
#if defined(__CUDA_ARCH__)
  return ::fma(x, s, b);
#else
  return x * s + b;
#endif
}

// float tanh made of arithmetic the compiler can vectorise (libm's tanhf is a scalar call):
// an odd Taylor polynomial near 0, where (e^2a - 1) / (e^2a + 1) would cancel, and that
// quotient elsewhere, with e^x from a Cody-Waite reduction and a degree-7 polynomial.
// Within a few float ulps of tanh (tests compare it with fp64 torch.tanh). Host only: the
// GPU has a fast tanh of its own.
C10_ALWAYS_INLINE float exp_for_tanh(float x) {                   // x in [0, 40]
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;    // |r| <= ln2 / 2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

C10_ALWAYS_INLINE float tanh_vectorisable(float x) {
  const float a = std::fabs(x) < 20.0f ? std::fabs(x) : 20.0f;  // tanh(20) rounds to 1
  const float e = exp_for_tanh(2.0f * a);
  const float far = 1.0f - 2.0f / (e + 1.0f);
  const float a2 = a * a;
  const float near = a + a * a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315 + a2 * (62.0f / 2835))));
  const float t = a < 0.2f ? near : far;
  const float signed_t = x < 0.0f ? -t : t;
  return x != x ? x : signed_t;  // NaN stays NaN
}

template <typename T>
FASTGAN_INLINE T tanh_of(T v) {
#if defined(__CUDA_ARCH__)
  return ::tanh(v);
#else
  if constexpr (std::is_same<T, float>::value)
    return tanh_vectorisable(v);
  else
    return std::tanh(v);
#endif
}

template <typename T>
FASTGAN_INLINE T exp_of(T v) {
#if defined(__CUDA_ARCH__)
  return ::exp(v);
#else
  return std::exp(v);
#endif
}

// 1 / (1 + e^-v): e^-v overflows to inf below about -88 (float), giving 0, as the true value
// underflows there too; NaN stays NaN. On the device, float uses the approximate division
// (2 ulp, 0 once the divisor passes 2^126, where the true value is below float's normal range):
// the correctly rounded one calls a slow-path subroutine, and the call's saved registers made
// the bf16 BatchNorm kernels, which keep 8 elements in flight, spill (ptxas, sm_90).
template <typename T>
FASTGAN_INLINE T sigmoid_of(T v) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) return __fdividef(1.0f, 1.0f + exp_of(-v));
#endif
  return T(1) / (T(1) + exp_of(-v));
}

// BCE with logits at one point, numerically stable: loss = max(x,0) - x*t + log1p(exp(-|x|)),
// d loss / dx = sigmoid(x) - t. One definition for the CPU and the CUDA kernel.
template <typename T>
FASTGAN_INLINE void bce_point(T x, T t, T& loss, T& grad) {
#if defined(__CUDA_ARCH__)
  const T e = ::exp(-::fabs(x));
  const T softplus = ::log1p(e);
#else
  const T e = std::exp(-std::abs(x));
  const T softplus = std::log1p(e);
#endif
  loss = (x > T(0) ? x : T(0)) - x * t + softplus;
  const T sig = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
  grad = sig - t;
}

// Comparisons are written so that NaN propagates the way torch.relu / leaky_relu do. The
// masks are arithmetic on a 0/1 value rather than a branch: on random data a branch
// mispredicts half the time and keeps the loop from vectorising.
template <Activation A, typename T>
FASTGAN_INLINE T activate_t(T v, T slope) {
  if constexpr (A == Activation::ReLU)
    return v < T(0) ? T(0) : v;
  else if constexpr (A == Activation::LeakyReLU)
    return v > T(0) ? v : v * slope;
  else if constexpr (A == Activation::Tanh)
    return tanh_of(v);
  else if constexpr (A == Activation::Sigmoid)
    return sigmoid_of(v);
  else
    return v;
}

// d act / d input, from the pre-activation value (used where the input is recomputed).
template <Activation A, typename T>
FASTGAN_INLINE T activation_grad_from_input_t(T v, T slope) {
  if constexpr (A == Activation::ReLU) return T(!(v <= T(0)));
  // A select, not bool-to-float arithmetic: GCC's AVX2 code for the latter ran branchy, 5x slower.
  else if constexpr (A == Activation::LeakyReLU)
    return v > T(0) ? T(1) : slope;
  else if constexpr (A == Activation::Tanh) {
    const T t = tanh_of(v);
    return T(1) - t * t;
  } else if constexpr (A == Activation::Sigmoid) {
    const T s = sigmoid_of(v);
    return s * (T(1) - s);
  } else
    return T(1);
}

// d act / d input, from the activation's output (conv+act saves only its output).
// Valid for leaky_relu only with slope >= 0, which the Python checks enforce.
template <Activation A, typename T>
FASTGAN_INLINE T activation_grad_from_output_t(T y, T slope) {
  if constexpr (A == Activation::ReLU)
    return T(!(y <= T(0)));
  else if constexpr (A == Activation::LeakyReLU)
    return y > T(0) ? T(1) : slope;
  else if constexpr (A == Activation::Tanh)
    return T(1) - y * y;
  else if constexpr (A == Activation::Sigmoid)
    return y * (T(1) - y);
  else
    return T(1);
}

// The one switch from a runtime activation to its compile-time tag. The CPU loops and the
// CUDA kernel launches call it once, outside their element loops, so each loop is
// instantiated per activation: no switch per element, and the CPU loops vectorise.
template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

template <typename F>
FASTGAN_INLINE decltype(auto) dispatch_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::ReLU: return f(ActivationTag<Activation::ReLU>());
    case Activation::LeakyReLU: return f(ActivationTag<Activation::LeakyReLU>());
    case Activation::Tanh: return f(ActivationTag<Activation::Tanh>());
    case Activation::Sigmoid: return f(ActivationTag<Activation::Sigmoid>());
    default: return f(ActivationTag<Activation::Identity>());
  }
}

// The same table as tensor functions made of differentiable ATen ops, for the double
// backward (fastgan/activations.py holds it once more for the Python reference path).
inline at::Tensor activate_tensor(Activation a, const at::Tensor& v, double slope) {
  switch (a) {
    case Activation::ReLU: return at::relu(v);
    case Activation::LeakyReLU: return at::leaky_relu(v, slope);
    case Activation::Tanh: return at::tanh(v);
    case Activation::Sigmoid: return at::sigmoid(v);
    default: return v;
  }
}

// The gradient at an activation's input from its output, made of torch's own backward ops, so
// that a create_graph backward is differentiable again in both arguments and keeps the edges
// torch's nodes keep (ReLU's and LeakyReLU's derivatives are zero in y, but y stays in the graph:
// a parameter that reaches a penalty only through them gets a zero gradient, not an error).
// LeakyReLU from its output needs slope >= 0, which every op checks.
inline at::Tensor activation_backward_tensor(Activation a, const at::Tensor& grad, const at::Tensor& y, double slope) {
  switch (a) {
    case Activation::ReLU: return at::threshold_backward(grad, y, 0);
    case Activation::LeakyReLU: return at::leaky_relu_backward(grad, y, slope, /*self_is_result=*/true);
    case Activation::Tanh: return at::tanh_backward(grad, y);
    case Activation::Sigmoid: return at::sigmoid_backward(grad, y);
    default: return grad;
  }
}

}  // namespace fastgan
