// The CPU op of StyleGAN's bias_act (NVlabs' semantics: y = clamp(act(x + b) * gain, -clamp,
// clamp), b along dim) and its backward, whose gradient is recomputed from x and b (no
// activation is stored), in one pass each. The op comes first; its loops follow, compiled once
// per instruction set (for_each_isa.h).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include "../fastgan.h"
#include "../args/stylegan_bias_act.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "stylegan_bias_act.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

at::Tensor stylegan_bias_act_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t dim,
                                 c10::string_view act, double alpha, double gain, double clamp) {
  const StyleganBiasActTensors t = stylegan_bias_act_tensors(x, b, dim, act);
  if (t.numel == 0) return t.out;
  FASTGAN_CPU_LOOP(stylegan_bias_act_entry)(t.x.scalar_type(), t.act, t.x.const_data_ptr(),
                                            t.b.defined() ? t.b.const_data_ptr() : nullptr, nullptr, t.out.data_ptr(),
                                            t.numel, t.run, t.C, alpha, gain, clamp);
  return t.out;
}

at::Tensor stylegan_bias_act_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                          const c10::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                                          double alpha, double gain, double clamp) {
  TORCH_CHECK(grad_out.defined(), "fastgan: grad_out is undefined");
  const StyleganBiasActTensors t = stylegan_bias_act_tensors(x, b, dim, act, grad_out);
  if (t.numel == 0) return t.out;
  FASTGAN_CPU_LOOP(stylegan_bias_act_entry)(t.x.scalar_type(), t.act, t.x.const_data_ptr(),
                                            t.b.defined() ? t.b.const_data_ptr() : nullptr, t.grad_out.const_data_ptr(),
                                            t.out.data_ptr(), t.numel, t.run, t.C, alpha, gain, clamp);
  return t.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("stylegan_bias_act", &stylegan_bias_act_cpu);
  m.impl("stylegan_bias_act_backward", &stylegan_bias_act_backward_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

// One element: the forward (dy == nullptr) or the gradient dy * gain * act'(x + b), zero where
// the clamp cut the output off.
template <StyleganAct A, bool BACKWARD, typename scalar_t, typename acc_t>
C10_ALWAYS_INLINE scalar_t bias_act_point(StyleganAct act, scalar_t xv, acc_t bias, const scalar_t* dy, int64_t i,
                                          acc_t alpha, acc_t gain, acc_t clamp) {
  const acc_t v = load(xv) + bias;
  const acc_t y = stylegan_act_of<A>(act, v, alpha) * gain;
  if constexpr (BACKWARD) {
    const acc_t g = load(dy[i]) * gain * stylegan_act_grad_of<A>(act, v, alpha);
    return store<scalar_t>(clamp_passes(y, clamp) ? g : acc_t(0));
  } else {
    return store<scalar_t>(clamp_symmetric(y, clamp));
  }
}

// Storage runs of `run` elements share a channel (run = x's stride along dim): channel (i /
// run) % C, each thread a range of elements walked as segments of one channel (a whole range
// when there is one bias or none). With run == 1 (channels_last, or the last dim) rows of C
// channels instead. act: the activation, read only by the kRuntimeAct loop.
template <StyleganAct A, bool BACKWARD, typename scalar_t>
void stylegan_bias_act_loop(StyleganAct act, const scalar_t* x, const scalar_t* b, const scalar_t* dy, scalar_t* out,
                            int64_t numel, int64_t run, int64_t C, double alpha_, double gain_, double clamp_) {
  using acc_t = acc_type<scalar_t>;
  const acc_t alpha = acc_t(alpha_), gain = acc_t(gain_), clamp = acc_t(clamp_);
  if (b != nullptr && run == 1 && C > 1) {
    const int64_t rows = numel / C;
    at::parallel_for(0, rows, grain(C), [&, alpha, gain, clamp](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          out[r * C + c] =
              bias_act_point<A, BACKWARD>(act, x[r * C + c], load(b[c]), dy, r * C + c, alpha, gain, clamp);
      }
    });
    return;
  }
  const int64_t segment = (b == nullptr || C == 1) ? numel : run;
  at::parallel_for(0, numel, kGrain, [&, alpha, gain, clamp](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1;) {
      const int64_t end = std::min(i1, (i / segment + 1) * segment);
      const acc_t bias = b == nullptr ? acc_t(0) : load(b[(i / run) % C]);
#pragma omp simd
      for (int64_t k = i; k < end; ++k)
        out[k] = bias_act_point<A, BACKWARD>(act, x[k], bias, dy, k, alpha, gain, clamp);
      i = end;
    }
  });
}

// dy: nullptr for the forward, the output's gradient for the backward.
void stylegan_bias_act_entry(c10::ScalarType dt, StyleganAct act, const void* x, const void* b, const void* dy,
                             void* out, int64_t numel, int64_t run, int64_t C, double alpha, double gain,
                             double clamp) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_stylegan_bias_act", [&] {
    const auto* xs = static_cast<const scalar_t*>(x);
    const auto* bs = static_cast<const scalar_t*>(b);
    const auto* dys = static_cast<const scalar_t*>(dy);
    auto* o = static_cast<scalar_t*>(out);
    dispatch_stylegan_act(act, [&](auto tag) {
      constexpr StyleganAct A = decltype(tag)::value;
      if (dys != nullptr)
        stylegan_bias_act_loop<A, true>(act, xs, bs, dys, o, numel, run, C, alpha, gain, clamp);
      else
        stylegan_bias_act_loop<A, false>(act, xs, bs, dys, o, numel, run, C, alpha, gain, clamp);
    });
  });
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
