// CUDA kernels for the standalone activation (applied to the conv output; its backward is
// one elementwise pass that feeds cuDNN's convolution backward) and for the losses on logits
// (BCE-with-logits and the other GAN losses of csrc/logit_losses.h), whose loss and gradient
// come out of one kernel with a deterministic reduction.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "common.cuh"
#include "../args/activation.h"
#include "../args/logit_loss.h"

namespace fastgan {
namespace cuda {
namespace {

// Layout does not matter elementwise: input and output share strides (both dense in the
// same memory format), so the kernels walk storage order, in packs of VEC elements, each thread
// a grid-stride walk with kLoadsInFlight packs loaded before any is used (walk_unrolled): one
// 16-byte load per step would leave one wave of 4 blocks per SM about 2 MB in flight, half of
// what an H200's bandwidth needs.
template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS activation_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                                        int64_t packs, acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  walk_unrolled<kLoadsInFlight>(
      RowCursor(first, step, VEC, 0), packs, [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); },
      [&](int64_t off, const P& v) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(A(v.v[k]), slope));
        store_pack<scalar_t, VEC>(y + off, o);
      });
}

template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS activation_backward_kernel(const scalar_t* __restrict__ dy,
                                                                 const scalar_t* __restrict__ y,
                                                                 scalar_t* __restrict__ dx, int64_t packs,
                                                                 acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  struct Loaded {
    P y, dy;
  };
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  walk_unrolled<kLoadsInFlight / 2>(
      RowCursor(first, step, VEC, 0), packs,
      [&](int64_t off) { return Loaded{load_pack<scalar_t, VEC>(y + off), load_pack<scalar_t, VEC>(dy + off)}; },
      [&](int64_t off, const Loaded& v) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k)
          o.v[k] = scalar_t(A(v.dy.v[k]) * activation_grad_from_output_t<ACT>(A(v.y.v[k]), slope));
        store_pack<scalar_t, VEC>(dx + off, o);
      });
}

at::Tensor activation_cuda(const at::Tensor& input_, c10::string_view activation, double negative_slope) {
  DeviceGuard guard(input_.device());
  const ActivationTensors t = activation_tensors(input_, activation, negative_slope);
  const Activation act = t.act;
  const at::Tensor &input = t.input, &out = t.out;
  const int64_t n = input.numel();
  if (n == 0) return out;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "activation_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    const bool vectorize = n % V == 0 && aligned16(x) && aligned16(y);
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (vectorize)
        launch(activation_kernel<scalar_t, V, ACT>, grid_for(n / V), kThreads, 0, stream, x, y, n / V,
               A(negative_slope));
      else
        launch(activation_kernel<scalar_t, 1, ACT>, grid_for(n), kThreads, 0, stream, x, y, n, A(negative_slope));
    });
  });
  return out;
}

at::Tensor activation_backward_cuda(const at::Tensor& grad_out_, const at::Tensor& output_, c10::string_view activation,
                                    double negative_slope) {
  DeviceGuard guard(output_.device());
  const ActivationGradTensors t = activation_backward_tensors(grad_out_, output_, activation, negative_slope);
  const Activation act = t.act;
  const at::Tensor &output = t.output, &grad_out = t.grad_out, &grad_in = t.grad_in;
  const int64_t n = output.numel();
  if (n == 0) return grad_in;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "activation_backward_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* y = output.const_data_ptr<scalar_t>();
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_in.data_ptr<scalar_t>();
    const bool vectorize = n % V == 0 && aligned16(y) && aligned16(dy) && aligned16(dx);
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (vectorize)
        launch(activation_backward_kernel<scalar_t, V, ACT>, grid_for(n / V), kThreads, 0, stream, dy, y, dx, n / V,
               A(negative_slope));
      else
        launch(activation_backward_kernel<scalar_t, 1, ACT>, grid_for(n), kThreads, 0, stream, dy, y, dx, n,
               A(negative_slope));
    });
  });
  return grad_in;
}

// ---------------------------------------------------------------------------------------
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

// The ticket counters of the current stream: zeroed once, then left at zero by every
// reduction. Launches on one stream run one after another, so they never share them at the
// same time. The buffer grows (a new zeroed one; the old one is freed in stream order) when a
// launch needs more counters than it holds. A graph being captured gets counters of its own,
// zeroed inside the graph: persistent ones would be shared with whatever stream the graph is
// later replayed on. Streams are told apart by stream_key, never by handle; a stream that is
// destroyed leaves its counters behind (256 bytes; torch's own streams are never destroyed).
at::Tensor reduction_tickets(const at::Tensor& like, int64_t count) {
  const auto options = like.options().dtype(at::kInt);
  if (stream_is_capturing()) return at::zeros({count}, options);
  static std::mutex mutex;
  static auto* tickets = new std::map<std::pair<int64_t, uint64_t>, at::Tensor>();  // never freed: see above
  const std::lock_guard<std::mutex> lock(mutex);
  at::Tensor& ticket = (*tickets)[{like.device().index(), stream_key(current_stream())}];
  if (!ticket.defined() || ticket.numel() < count) ticket = at::zeros({std::max<int64_t>(count, 64)}, options);
  return ticket;
}

}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("activation", &cuda::activation_cuda);
  m.impl("activation_backward", &cuda::activation_backward_cuda);
  m.impl("bce_with_logits", &cuda::bce_with_logits_cuda);
  m.impl("logit_loss", &cuda::logit_loss_cuda);
}

}  // namespace fastgan
