// CUDA kernels for the losses on logits (BCE-with-logits and the other GAN losses of
// csrc/logit_losses.h), whose loss and gradient come out of one kernel with a deterministic
// reduction.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "common.cuh"
#include "../args/logit_loss.h"

namespace fastgan {
namespace cuda {
namespace {

// The losses on logits: each block writes its elements' gradient (and per-element loss for
// reduction='none') and one partial loss sum; the last block to finish (an integer ticket,
// so the choice does not change the result) adds the partials in a fixed order and sets the
// ticket back to zero for the next call, so no call needs a memset.
template <typename scalar_t, LossKind K>
__global__ void FASTGAN_KERNEL_BOUNDS loss_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ t,
                                                  acc_type<scalar_t> target_value, int64_t n,
                                                  scalar_t* __restrict__ loss_elems, scalar_t* __restrict__ grad,
                                                  acc_type<scalar_t> grad_scale, acc_type<scalar_t>* partial,
                                                  unsigned int* ticket, scalar_t* __restrict__ loss_out,
                                                  acc_type<scalar_t> loss_scale) {
  using A = acc_type<scalar_t>;
  A sum = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    A l, g;
    loss_point<K>(A(x[i]), t ? A(t[i]) : target_value, l, g);
    grad[i] = scalar_t(g * grad_scale);
    if (loss_elems) loss_elems[i] = scalar_t(l);
    sum += l;
  }
  if (loss_elems) return;
  A sums[1][1] = {{sum}};
  fold_rows(sums, 1, [&](int, int, const A(&t)[1]) { partial[blockIdx.x] = t[0]; });  // in one thread
  if (!last_block_to_finish(ticket, gridDim.x)) return;  // its barriers also free fold_rows' shared memory
  fold_partials<1, A>(
      1, int(gridDim.x),
      [&](int, int s) {
        Sums<A, 1> v;
        v.v[0] = __ldcg(partial + s);
        return v;
      },
      [&](int, const A(&t)[1]) { *loss_out = scalar_t(t[0] * loss_scale); });
}

// Runs the loss kernel over b's tensors, reduced by the last block: (loss, d loss / d input).
std::tuple<at::Tensor, at::Tensor> loss_cuda(LossTensors& b, LossKind kind, double target_value) {
  const at::Tensor &input = b.input, &target = b.target;
  at::Tensor &grad = b.grad, &loss = b.loss;
  const bool has_target = b.has_target;
  const Reduction red = b.reduction;
  const int64_t n = input.numel();
  if (n == 0) {
    if (red != Reduction::None) loss.fill_(red == Reduction::Mean ? std::nan("") : 0.0);
    return {loss, grad};
  }
  auto stream = current_stream();
  const int blocks = std::min(grid_for(n), 1024);
  const auto sdt = stats_dtype(input);
  at::Tensor partial, ticket;
  if (red != Reduction::None) {
    partial = at::empty({blocks}, input.options().dtype(sdt));
    ticket = reduction_tickets(input);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "logit_loss_cuda", [&] {
    using A = acc_type<scalar_t>;
    const A inv_n = A(1) / A(n);
    dispatch_loss_kind(kind, [&](auto tag) {
      launch(loss_kernel<scalar_t, decltype(tag)::value>, blocks, kThreads, 0, stream, input.const_data_ptr<scalar_t>(),
             has_target ? target.const_data_ptr<scalar_t>() : nullptr, A(target_value), n,
             red == Reduction::None ? loss.data_ptr<scalar_t>() : nullptr, grad.data_ptr<scalar_t>(),
             red == Reduction::Mean ? inv_n : A(1), red == Reduction::None ? nullptr : partial.data_ptr<A>(),
             red == Reduction::None ? nullptr : reinterpret_cast<unsigned int*>(ticket.data_ptr<int>()),
             red == Reduction::None ? nullptr : loss.data_ptr<scalar_t>(), red == Reduction::Mean ? inv_n : A(1));
    });
  });
  return {loss, grad};
}

std::tuple<at::Tensor, at::Tensor> bce_with_logits_cuda(const at::Tensor& input_,
                                                        const c10::optional<at::Tensor>& target_, double target_value,
                                                        int64_t reduction) {
  DeviceGuard guard(input_.device());
  LossTensors b = loss_tensors(input_, target_, reduction);
  return loss_cuda(b, LossKind::BCE, target_value);
}

std::tuple<at::Tensor, at::Tensor> logit_loss_cuda(const at::Tensor& input_, double target, c10::string_view kind,
                                                   int64_t reduction) {
  DeviceGuard guard(input_.device());
  const LossKind k = check_logit_loss_args(input_, target, kind, reduction);
  LossTensors b = loss_tensors(input_, c10::nullopt, reduction);
  return loss_cuda(b, k, target);
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("bce_with_logits", &cuda::bce_with_logits_cuda);
  m.impl("logit_loss", &cuda::logit_loss_cuda);
}

}  // namespace fastgan
