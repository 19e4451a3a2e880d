// The CPU ops of the fused GAN losses on logits (bce_with_logits with an optional target
// tensor; logit_loss: bce, hinge, lsgan, linear against one target value), each returning the
// loss and its gradient from one pass. The ops come first; their loop follows, compiled once
// per instruction set (for_each_isa.h), and the ops call the set this processor runs
// (FASTGAN_CPU_LOOP).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include "../fastgan.h"
#include "../args/logit_loss.h"
#include "isa.h"

#define FASTGAN_CPU_LOOPS "logit_loss.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

// Runs the loss kernel over b's tensors and reduces: (loss, d loss / d input).
std::tuple<at::Tensor, at::Tensor> loss_cpu(LossTensors& b, LossKind kind, double target_value) {
  const int64_t n = b.input.numel();
  const Reduction red = b.reduction;
  double total = FASTGAN_CPU_LOOP(loss_entry)(
      b.input.scalar_type(), kind, b.input.const_data_ptr(), b.has_target ? b.target.const_data_ptr() : nullptr,
      target_value, b.grad.data_ptr(), red == Reduction::None ? b.loss.data_ptr() : nullptr, n, red);
  if (red == Reduction::None) return {b.loss, b.grad};
  // Mean of an empty tensor is NaN, as in torch.
  if (red == Reduction::Mean) total = n == 0 ? std::nan("") : total / double(n);
  b.loss.fill_(total);
  return {b.loss, b.grad};
}

std::tuple<at::Tensor, at::Tensor> bce_with_logits_cpu(const at::Tensor& input_,
                                                       const c10::optional<at::Tensor>& target_, double target_value,
                                                       int64_t reduction) {
  LossTensors b = loss_tensors(input_, target_, reduction);
  return loss_cpu(b, LossKind::BCE, target_value);
}

std::tuple<at::Tensor, at::Tensor> logit_loss_cpu(const at::Tensor& input_, double target, c10::string_view kind,
                                                  int64_t reduction) {
  const LossKind k = check_logit_loss_args(input_, target, kind, reduction);
  LossTensors b = loss_tensors(input_, c10::nullopt, reduction);
  return loss_cpu(b, k, target);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bce_with_logits", &bce_with_logits_cpu);
  m.impl("logit_loss", &logit_loss_cpu);
}

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

// Fixed-size blocks summed in order: the same bits for any thread count.
constexpr int64_t kLossBlock = 4096;

// Reduction None: loss and gradient per element. Sum/Mean: blocks of fixed size summed in
// order (the same bits for any thread count), the gradient scaled by 1/n for the mean.
template <LossKind K, typename scalar_t>
double loss_loop(const scalar_t* x, const scalar_t* t, double target_value, scalar_t* gp, scalar_t* lp, int64_t n,
                 Reduction red) {
  using acc_t = acc_type<scalar_t>;
  const acc_t tv = acc_t(target_value);
  const acc_t gscale = red == Reduction::Mean ? acc_t(1) / acc_t(std::max<int64_t>(n, 1)) : acc_t(1);
  if (red == Reduction::None) {
    at::parallel_for(0, n, kGrain, [&, tv, gscale](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        acc_t l, gr;
        loss_point<K>(load(x[i]), t ? load(t[i]) : tv, l, gr);
        lp[i] = store<scalar_t>(l);
        gp[i] = store<scalar_t>(gr);
      }
    });
    return 0.0;
  }
  const int64_t blocks = (n + kLossBlock - 1) / kLossBlock;
  std::vector<double> partial(blocks, 0.0);
  at::parallel_for(0, blocks, 1, [&, tv, gscale](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i1 = std::min(n, (b + 1) * kLossBlock);
      acc_t s = 0;
      for (int64_t i = b * kLossBlock; i < i1; ++i) {
        acc_t l, gr;
        loss_point<K>(load(x[i]), t ? load(t[i]) : tv, l, gr);
        s += l;
        gp[i] = store<scalar_t>(gr * gscale);
      }
      partial[b] = double(s);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

double loss_entry(c10::ScalarType dt, LossKind kind, const void* x_, const void* t_, double target_value, void* grad,
                  void* loss, int64_t n, Reduction red) {
  double total = 0;
  FASTGAN_CPU_DISPATCH(dt, "fastgan_logit_loss", [&] {
    dispatch_loss_kind(kind, [&](auto tag) {
      total = loss_loop<decltype(tag)::value>(static_cast<const scalar_t*>(x_), static_cast<const scalar_t*>(t_),
                                              target_value, static_cast<scalar_t*>(grad), static_cast<scalar_t*>(loss),
                                              n, red);
    });
  });
  return total;
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
