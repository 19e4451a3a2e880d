// CUDA kernels of a Linear layer's bias + activation (the matrix product before them is
// cuBLAS's). Rows of C contiguous features are tiled as channels_last BatchNorm is
// (plan_rows): threads across features, rows split over blockIdx.y.
//   forward:  y = act(x + bias), one pass; each thread loads its features' bias once.
//   backward: g = dy * act'(y) and grad_bias = sum of g over rows, from one pass over dy and y.
//             Per block, the rows' sums are folded in shared memory; with one split the block
//             writes grad_bias itself, otherwise every block writes its partial sums and the
//             last block of each column tile to finish (an integer ticket) adds them in a
//             fixed order with all its threads. No float atomics, so results are the same bits from
//             run to run, and it is one launch.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"

namespace fastgan {
namespace cuda {
namespace {

template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS bias_act_kernel(const scalar_t* __restrict__ x,
                                                      const scalar_t* __restrict__ bias,
                                                      scalar_t* __restrict__ y, int64_t rows, int64_t C,
                                                      int64_t chunk, acc_t<scalar_t> slope) {
  using A = acc_t<scalar_t>;
  const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (c0 >= C) return;
  const auto bv = load_pack<scalar_t, VEC>(bias + c0);
  A b[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) b[k] = A(bv.v[k]);
  const int64_t end = min64(rows, (int64_t(blockIdx.y) + 1) * chunk);
  for (int64_t r = int64_t(blockIdx.y) * chunk + threadIdx.y; r < end; r += blockDim.y) {
    const auto xv = load_pack<scalar_t, VEC>(x + r * C + c0);
    Pack<scalar_t, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(A(xv.v[k]) + b[k], slope));
    store_pack<scalar_t, VEC>(y + r * C + c0, o);
  }
}

// partial: [splits][C] (unused with one split); ticket: gridDim.x counters, zero on entry, left
// at zero.
template <typename scalar_t, int VEC, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS bias_act_backward_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y, scalar_t* __restrict__ dx, int64_t rows,
    int64_t C, int64_t chunk, acc_t<scalar_t> slope, acc_t<scalar_t>* __restrict__ partial, unsigned int* ticket,
    scalar_t* __restrict__ grad_bias) {
  using A = acc_t<scalar_t>;
  const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  const bool active = c0 < C;
  A s[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) s[k] = A(0);
  if (active) {
    const int64_t end = min64(rows, (int64_t(blockIdx.y) + 1) * chunk);
    for (int64_t r = int64_t(blockIdx.y) * chunk + threadIdx.y; r < end; r += blockDim.y) {
      const auto dv = load_pack<scalar_t, VEC>(dy + r * C + c0);
      const auto yv = load_pack<scalar_t, VEC>(y + r * C + c0);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A g = A(dv.v[k]) * activation_grad_from_output_t<ACT>(A(yv.v[k]), slope);
        o.v[k] = scalar_t(g);
        s[k] += g;
      }
      store_pack<scalar_t, VEC>(dx + r * C + c0, o);
    }
  }
  FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
  A* sh = reinterpret_cast<A*>(smem_raw);  // [blockDim.y][blockDim.x][VEC]
#pragma unroll
  for (int k = 0; k < VEC; ++k) sh[(threadIdx.y * blockDim.x + threadIdx.x) * VEC + k] = s[k];
  tree_fold_rows<VEC>(sh, int(blockDim.x), int(threadIdx.x), active, [](A* mine, const A* other) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) mine[k] += other[k];
  });
  const A* folded = sh + threadIdx.x * VEC;  // row 0, valid in threadIdx.y == 0 after the fold
  if (gridDim.y == 1) {
    if (threadIdx.y == 0 && active)
      for (int k = 0; k < VEC && c0 + k < C; ++k) grad_bias[c0 + k] = scalar_t(folded[k]);
    return;
  }
  if (threadIdx.y == 0 && active) {
    for (int k = 0; k < VEC && c0 + k < C; ++k) partial[int64_t(blockIdx.y) * C + c0 + k] = folded[k];
    __threadfence();  // this thread's partials are visible before its block takes a ticket
  }
  // The last block of this tile of columns adds the splits' partials in a fixed order, the
  // whole block working (fold_splits).
  if (!last_block_to_finish(ticket + blockIdx.x, gridDim.y)) return;
  const int64_t tile = int64_t(blockIdx.x) * blockDim.x * VEC;
  fold_splits<Sums<A, 1>>(
      int(min64(C - tile, int64_t(blockDim.x) * VEC)), int(gridDim.y),
      [&](int c, int sp) {
        Sums<A, 1> t;
        t.v[0] = __ldcg(partial + int64_t(sp) * C + tile + c);
        return t;
      },
      [&](int c, const Sums<A, 1>& t) { grad_bias[tile + c] = scalar_t(t.v[0]); });
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
  const Activation act = parse_activation(activation);
  const at::Tensor &input = t.input, &bias = t.bias, &out = t.out;
  if (out.numel() == 0) return out;
  const int64_t C = t.C, rows = t.rows;
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "bias_act_cuda", [&] {
    using A = acc_t<scalar_t>;
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
  const Activation act = parse_activation(activation);
  const at::Tensor &output = t.output, &grad_out = t.grad_out, &grad_in = t.grad_in, &grad_bias = t.grad_bias;
  const int64_t C = t.C, rows = t.rows;
  if (C == 0) return {grad_in, grad_bias};
  if (rows == 0) return {grad_in, grad_bias.zero_()};
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "bias_act_backward_cuda", [&] {
    using A = acc_t<scalar_t>;
    constexpr int V = vec_width<scalar_t>();
    const scalar_t* y = output.const_data_ptr<scalar_t>();
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_in.data_ptr<scalar_t>();
    const bool vectorize = use_vectors<V>(C, {y, dy, dx});
    const GridPlan p = plan_rows(rows, C, vectorize ? V : 1);
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
        launch(bias_act_backward_kernel<scalar_t, V, ACT>, p.grid, p.block, size_t(kThreads) * V * sizeof(A), stream,
               dy, y, dx, rows, C, p.chunk, A(negative_slope), partial_ptr, ticket_ptr, grad_bias.data_ptr<scalar_t>());
      else
        launch(bias_act_backward_kernel<scalar_t, 1, ACT>, p.grid, p.block, size_t(kThreads) * sizeof(A), stream, dy,
               y, dx, rows, C, p.chunk, A(negative_slope), partial_ptr, ticket_ptr, grad_bias.data_ptr<scalar_t>());
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
