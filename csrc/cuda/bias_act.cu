// CUDA kernels of a Linear layer's bias + activation (the matrix product before them is
// cuBLAS's). Rows of C contiguous features are tiled as channels_last BatchNorm is
// (plan_rows): threads across features, rows split over blockIdx.y.
//   forward:  y = act(x + bias), one pass; each thread loads its features' bias once.
//   backward: g = dy * act'(y) and grad_bias = sum of g over rows, from one pass over dy and y.
//             Per block, the rows' sums are added (fold_rows); with one split the block
//             writes grad_bias itself, otherwise every block writes its partial sums and the
//             last block of each column tile to finish (an integer ticket) adds them in a
//             fixed order with all its threads (fold_partials; column tiles of at most
//             kFinishChannels, plan_reduction_rows). No float atomics, so results are the same
//             bits from run to run, and it is one launch.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"
#include "../args/bias_act.h"

namespace fastgan {
namespace cuda {
namespace {

template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ bias,
                                                      scalar_t* __restrict__ y, int64_t rows, int64_t C, int64_t chunk,
                                                      acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (c0 >= C) return;
  const auto bv = load_pack<scalar_t, VEC>(bias + c0);
  A b[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) b[k] = A(bv.v[k]);
  const int64_t end = min64(rows, (int64_t(blockIdx.y) + 1) * chunk);
  walk_unrolled<kLoadsInFlight>(
      RowCursor(int64_t(blockIdx.y) * chunk + threadIdx.y, blockDim.y, C, c0), end,
      [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); },
      [&](int64_t off, const P& v) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(A(v.v[k]) + b[k], slope));
        store_pack<scalar_t, VEC>(y + off, o);
      });
}

// partial: [splits][C] (unused with one split); ticket: gridDim.x counters, zero on entry, left
// at zero.
template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS bias_act_backward_kernel(const scalar_t* __restrict__ dy,
                                                               const scalar_t* __restrict__ y,
                                                               scalar_t* __restrict__ dx, int64_t rows, int64_t C,
                                                               int64_t chunk, acc_type<scalar_t> slope,
                                                               acc_type<scalar_t>* __restrict__ partial,
                                                               unsigned int* ticket, scalar_t* __restrict__ grad_bias) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  struct Loaded {
    P dy, y;
  };
  const int tx = int(blockDim.x);
  const int64_t tile = int64_t(blockIdx.x) * tx * VEC, c0 = tile + int64_t(threadIdx.x) * VEC;
  A sums[1][VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) sums[0][k] = A(0);
  if (c0 < C) {
    const int64_t end = min64(rows, (int64_t(blockIdx.y) + 1) * chunk);
    walk_unrolled<kLoadsInFlight / 2>(
        RowCursor(int64_t(blockIdx.y) * chunk + threadIdx.y, blockDim.y, C, c0), end,
        [&](int64_t off) { return Loaded{load_pack<scalar_t, VEC>(dy + off), load_pack<scalar_t, VEC>(y + off)}; },
        [&](int64_t off, const Loaded& v) {
          P o;
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            const A g = A(v.dy.v[k]) * activation_grad_from_output_t<ACT>(A(v.y.v[k]), slope);
            o.v[k] = scalar_t(g);
            sums[0][k] += g;
          }
          store_pack<scalar_t, VEC>(dx + off, o);
        });
  }
  const bool one_split = gridDim.y == 1;
  fold_rows(sums, tx, [&](int xi, int k, const A(&t)[1]) {
    const int64_t c = tile + int64_t(xi) * VEC + k;
    if (c >= C) return;
    if (one_split) {
      grad_bias[c] = scalar_t(t[0]);
    } else {
      partial[int64_t(blockIdx.y) * C + c] = t[0];
    }
  });
  // The last block of this tile of columns adds the splits' partials in a fixed order, the
  // whole block working.
  if (one_split || !last_block_to_finish(ticket + blockIdx.x, gridDim.y)) return;
  fold_partials<1, A>(
      int(min64(C - tile, int64_t(tx) * VEC)), int(gridDim.y),
      [&](int c, int sp) {
        Sums<A, 1> t;
        t.v[0] = __ldcg(partial + int64_t(sp) * C + tile + c);
        return t;
      },
      [&](int c, const A(&t)[1]) { grad_bias[tile + c] = scalar_t(t[0]); });
}

// The 16-byte path needs whole packs in every row and aligned storage.
template <int V>
bool use_vectors(int64_t C, std::initializer_list<const void*> pointers) {
  if (C % V != 0) return false;
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

at::Tensor bias_act_cuda(const at::Tensor& input_, const at::Tensor& bias_, c10::string_view activation,
                         double negative_slope) {
  DeviceGuard guard(input_.device());
  const BiasActTensors t = bias_act_tensors(input_, bias_);
  const Activation act = activation_from_output_args(activation, negative_slope, "bias_act");
  const at::Tensor &input = t.input, &bias = t.bias, &out = t.out;
  if (out.numel() == 0) return out;
  const int64_t C = t.C, rows = t.rows;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "bias_act_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* b = bias.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (use_vectors<V>(C, {x, b, y})) {
        const GridPlan p = plan_rows(rows, C, V);
        launch(bias_act_kernel<scalar_t, V, ACT>, p.grid, p.block, 0, stream, x, b, y, rows, C, p.chunk,
               A(negative_slope));
      } else {
        const GridPlan p = plan_rows(rows, C, 1);
        launch(bias_act_kernel<scalar_t, 1, ACT>, p.grid, p.block, 0, stream, x, b, y, rows, C, p.chunk,
               A(negative_slope));
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_act_backward_cuda(const at::Tensor& grad_out_, const at::Tensor& output_,
                                                          c10::string_view activation, double negative_slope) {
  DeviceGuard guard(output_.device());
  const BiasActGradTensors t = bias_act_backward_tensors(grad_out_, output_);
  const Activation act = activation_from_output_args(activation, negative_slope, "bias_act_backward");
  const at::Tensor &output = t.output, &grad_out = t.grad_out, &grad_in = t.grad_in, &grad_bias = t.grad_bias;
  const int64_t C = t.C, rows = t.rows;
  if (C == 0) return {grad_in, grad_bias};
  if (rows == 0) return {grad_in, grad_bias.zero_()};
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "bias_act_backward_cuda", [&] {
    using A = acc_type<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* y = output.const_data_ptr<scalar_t>();
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_in.data_ptr<scalar_t>();
    const bool vectorize = use_vectors<V>(C, {y, dy, dx});
    const GridPlan p = plan_reduction_rows<A>(rows, C, vectorize ? V : 1);
    at::Tensor partial, ticket;
    if (p.splits > 1) {
      partial = at::empty({int64_t(p.splits) * C}, output.options().dtype(stats_dtype(output)));
      ticket = reduction_tickets(output, p.grid.x);
    }
    A* partial_ptr = p.splits > 1 ? partial.data_ptr<A>() : nullptr;
    unsigned int* ticket_ptr = p.splits > 1 ? reinterpret_cast<unsigned int*>(ticket.data_ptr<int>()) : nullptr;
    dispatch_act(act, [&](auto tag) {
      constexpr Activation ACT = decltype(tag)::value;
      if (vectorize)
        launch(bias_act_backward_kernel<scalar_t, V, ACT>, p.grid, p.block, 0, stream, dy, y, dx, rows, C, p.chunk,
               A(negative_slope), partial_ptr, ticket_ptr, grad_bias.data_ptr<scalar_t>());
      else
        launch(bias_act_backward_kernel<scalar_t, 1, ACT>, p.grid, p.block, 0, stream, dy, y, dx, rows, C, p.chunk,
               A(negative_slope), partial_ptr, ticket_ptr, grad_bias.data_ptr<scalar_t>());
    });
  });
  return {grad_in, grad_bias};
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("bias_act", &cuda::bias_act_cuda);
  m.impl("bias_act_backward", &cuda::bias_act_backward_cuda);
}

}  // namespace fastgan
