// The one table of activations the compiled kernels use. Its names are the keys of
// fastgan/activations.py, which holds the same table for the reference path, so a name
// means the same function on both paths.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <string>
#include <type_traits>

namespace fastgan {

enum class Activation : int { Identity = 0, ReLU = 1, LeakyReLU = 2, Tanh = 3 };

inline Activation parse_activation(c10::string_view name) {
  if (name == "identity") return Activation::Identity;
  if (name == "relu") return Activation::ReLU;
  if (name == "leaky_relu") return Activation::LeakyReLU;
  if (name == "tanh") return Activation::Tanh;
  TORCH_CHECK(false, "fastgan: unknown activation '", std::string(name),
              "'; expected one of identity, relu, leaky_relu, tanh");
}

// x*s + b written once so that forward and backward compute the pre-activation with the
// same rounding: the backward recomputes the ReLU mask from it instead of storing one.
template <typename T>
C10_HOST_DEVICE inline T affine(T x, T s, T b) {
#if defined(__CUDA_ARCH__)
  return ::fma(x, s, b);
#else
  return x * s + b;
#endif
}

// Comparisons are written so that NaN propagates the way torch.relu / leaky_relu do.
template <typename T>
C10_HOST_DEVICE inline T activate(Activation a, T v, T slope) {
  switch (a) {
    case Activation::ReLU: return v < T(0) ? T(0) : v;
    case Activation::LeakyReLU: return v > T(0) ? v : v * slope;
    case Activation::Tanh: return ::tanh(v);
    default: return v;
  }
}

// d act / d input, from the pre-activation value (used where the input is recomputed).
template <typename T>
C10_HOST_DEVICE inline T activation_grad_from_input(Activation a, T v, T slope) {
  switch (a) {
    case Activation::ReLU: return v <= T(0) ? T(0) : T(1);
    case Activation::LeakyReLU: return v > T(0) ? T(1) : slope;
    case Activation::Tanh: { T t = ::tanh(v); return T(1) - t * t; }
    default: return T(1);
  }
}

// d act / d input, from the activation's output (conv+act saves only its output).
// Valid for leaky_relu only with slope >= 0, which the Python checks enforce.
template <typename T>
C10_HOST_DEVICE inline T activation_grad_from_output(Activation a, T y, T slope) {
  switch (a) {
    case Activation::ReLU: return y <= T(0) ? T(0) : T(1);
    case Activation::LeakyReLU: return y > T(0) ? T(1) : slope;
    case Activation::Tanh: return T(1) - y * y;
    default: return T(1);
  }
}

// Compile-time versions for the CPU loops: a per-element switch keeps the compiler from
// vectorising, so each loop is instantiated once per activation instead.
template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

template <typename F>
inline void dispatch_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::ReLU: return f(ActivationTag<Activation::ReLU>());
    case Activation::LeakyReLU: return f(ActivationTag<Activation::LeakyReLU>());
    case Activation::Tanh: return f(ActivationTag<Activation::Tanh>());
    default: return f(ActivationTag<Activation::Identity>());
  }
}

template <Activation A, typename T>
inline T activate_t(T v, T slope) {
  if constexpr (A == Activation::ReLU) return v < T(0) ? T(0) : v;
  else if constexpr (A == Activation::LeakyReLU) return v > T(0) ? v : v * slope;
  else if constexpr (A == Activation::Tanh) return std::tanh(v);
  else return v;
}

// The masks are written as arithmetic on a 0/1 value rather than a branch: on random
// data a branch mispredicts half the time and keeps the loop from vectorising.
template <Activation A, typename T>
inline T activation_grad_from_input_t(T v, T slope) {
  if constexpr (A == Activation::ReLU) return T(!(v <= T(0)));
  else if constexpr (A == Activation::LeakyReLU) { const T m = T(v > T(0)); return m + (T(1) - m) * slope; }
  else if constexpr (A == Activation::Tanh) { T t = std::tanh(v); return T(1) - t * t; }
  else return T(1);
}

template <Activation A, typename T>
inline T activation_grad_from_output_t(T y, T slope) {
  if constexpr (A == Activation::ReLU) return T(!(y <= T(0)));
  else if constexpr (A == Activation::LeakyReLU) { const T m = T(y > T(0)); return m + (T(1) - m) * slope; }
  else if constexpr (A == Activation::Tanh) return T(1) - y * y;
  else return T(1);
}

}  // namespace fastgan
