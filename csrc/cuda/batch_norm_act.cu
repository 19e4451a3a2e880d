// CUDA kernels for fused BatchNorm + activation.
//
// Forward (training): two launches. bn_stats writes per-(channel, split) Welford partials;
// bn_apply merges a channel's partials in a fixed order (deterministic: no float atomics),
// writes the batch statistics, and normalises + scales + shifts + activates in one pass.
// Eval: bn_apply alone, with the running statistics folded into scale and shift.
// Backward: two launches. bn_backward_reduce sums g and g*(x-mean) per (channel, split),
// with g = grad_out * act'(pre-activation) and the pre-activation recomputed from x (no mask
// is stored); bn_backward_input merges the sums, writes grad_weight/grad_bias and grad_input.
//
// Both layouts are walked in place: NCHW with one channel per block (blockIdx.x) and the
// channel's N*H*W elements split over blockIdx.y; NHWC with a tile of channels across
// threadIdx.x and rows across threadIdx.y. Each thread moves 16 bytes at a time where the
// shape and alignment allow (VEC > 1) and one element otherwise.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "common.cuh"

namespace fastgan {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct Geometry {
  int64_t N, C, HW;
  bool cl;
};

// How a (channels x elements-per-channel) problem is spread over the grid.
struct Plan {
  dim3 grid, block;
  int64_t chunk;  // elements (NCHW) or rows (NHWC) per split
  int splits;
};

Plan make_plan(const Geometry& g, int vec) {
  const auto* prop = device_props();
  const int64_t target = int64_t(prop->multiProcessorCount) * std::max(1, prop->maxThreadsPerMultiProcessor / kThreads);
  Plan p;
  if (!g.cl) {
    const int64_t total = g.N * g.HW;
    const int64_t max_splits = std::max<int64_t>(1, total / (int64_t(kThreads) * vec * 4));
    int64_t s = std::min<int64_t>({std::max<int64_t>(1, ceil_div(target, g.C)), max_splits, 1024});
    p.chunk = ceil_div(ceil_div(total, s), vec) * vec;
    p.splits = int(ceil_div(total, p.chunk));
    p.block = dim3(kThreads, 1);
    p.grid = dim3(unsigned(g.C), unsigned(p.splits));
  } else {
    const int64_t cvecs = ceil_div(g.C, vec);
    const int tx = int(std::min<int64_t>(32, next_pow2(cvecs)));
    const int ty = kThreads / tx;
    const int64_t cblocks = ceil_div(cvecs, tx);
    const int64_t rows = g.N * g.HW;
    const int64_t max_splits = std::max<int64_t>(1, rows / (int64_t(ty) * 4));
    int64_t s = std::min<int64_t>({std::max<int64_t>(1, ceil_div(target, cblocks)), max_splits, 1024});
    p.chunk = ceil_div(rows, s);
    p.splits = int(ceil_div(rows, p.chunk));
    p.block = dim3(tx, ty);
    p.grid = dim3(unsigned(cblocks), unsigned(p.splits));
  }
  return p;
}

// Where a channel's statistics come from, and where the batch statistics go.
template <typename A>
struct BnParams {
  const A* partial;  // training: [C][splits][3] Welford partials; nullptr in eval
  int splits;
  A count;  // N*H*W
  const A* mean;  // eval (or backward): the statistics to normalise with
  const A* var;
  const A* weight;  // may be nullptr (affine=False)
  const A* bias;
  A eps;
  A* save_mean;  // written by the split-0 block of each channel
  A* save_var;
};

template <typename A>
__device__ void channel_coeffs(const BnParams<A>& p, int64_t c, bool write, A& mean, A& invstd, A& scale,
                               A& shift) {
  A var;
  if (p.partial != nullptr) {
    Welford<A> t;
    const A* q = p.partial + c * p.splits * 3;
    for (int s = 0; s < p.splits; ++s) t.merge(q[3 * s], q[3 * s + 1], q[3 * s + 2]);
    mean = t.mean;
    var = t.m2 / p.count;
  } else {
    mean = p.mean[c];
    var = p.var[c];
  }
  if (write && p.save_mean != nullptr) {
    p.save_mean[c] = mean;
    p.save_var[c] = var;
  }
  invstd = A(1) / ::sqrt(var + p.eps);
  const A w = p.weight ? p.weight[c] : A(1);
  const A b = p.bias ? p.bias[c] : A(0);
  scale = w * invstd;
  shift = b - mean * scale;
}

// NHWC kernels: the threads of row 0 compute NV per-channel values for their VEC channels
// (f(c, out[NV])) into shared memory laid out [NV][blockDim.x * VEC]; after the barrier every
// thread whose channels exist reads its own values into registers, values[i][k].
template <int NV, int VEC, typename A, typename F>
__device__ __forceinline__ void stage_channel_values(A* sh, int64_t c0, int64_t C, F&& f, A (&values)[NV][VEC]) {
  const int width = blockDim.x * VEC;
  if (threadIdx.y == 0) {
    for (int k = 0; k < VEC; ++k) {
      if (c0 + k >= C) break;
      A v[NV];
      f(c0 + k, v);
#pragma unroll
      for (int i = 0; i < NV; ++i) sh[i * width + threadIdx.x * VEC + k] = v[i];
    }
  }
  __syncthreads();
  if (c0 >= C) return;
#pragma unroll
  for (int i = 0; i < NV; ++i)
#pragma unroll
    for (int k = 0; k < VEC; ++k) values[i][k] = sh[i * width + threadIdx.x * VEC + k];
}

// ---------------------------------------------------------------------------------------
// Statistics
template <typename scalar_t, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) bn_stats_kernel(const scalar_t* __restrict__ x, int64_t N, int64_t C,
                                                            int64_t HW, int64_t chunk, acc_t<scalar_t>* __restrict__ partial) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y, splits = gridDim.y;
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    const int64_t total = N * HW, begin = s * chunk, end = min64(total, begin + chunk);
    Welford<A> w;
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += int64_t(blockDim.x) * VEC) {
      const int64_t n = j / HW;
      const auto v = load_pack<scalar_t, VEC>(x + (n * C + c) * HW + (j - n * HW));
#pragma unroll
      for (int k = 0; k < VEC; ++k) w.push(A(v.v[k]));
    }
    w = warp_merge(w);
    __shared__ A sh[3][kThreads / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
      sh[0][warp] = w.n;
      sh[1][warp] = w.mean;
      sh[2][warp] = w.m2;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      Welford<A> t;
      for (int i = 0; i < int(blockDim.x / 32); ++i) t.merge(sh[0][i], sh[1][i], sh[2][i]);
      A* out = partial + (c * splits + s) * 3;
      out[0] = t.n;
      out[1] = t.mean;
      out[2] = t.m2;
    }
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    const int64_t rows = N * HW, begin = s * chunk, end = min64(rows, begin + chunk);
    Welford<A> w[VEC];
    if (c0 < C) {
      for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
        const auto v = load_pack<scalar_t, VEC>(x + m * C + c0);
#pragma unroll
        for (int k = 0; k < VEC; ++k) w[k].push(A(v.v[k]));
      }
    }
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    A* sh = reinterpret_cast<A*>(smem_raw);
    const int width = blockDim.x * VEC;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      A* e = sh + (threadIdx.y * width + threadIdx.x * VEC + k) * 3;
      e[0] = w[k].n;
      e[1] = w[k].mean;
      e[2] = w[k].m2;
    }
    __syncthreads();
    if (threadIdx.y == 0 && c0 < C) {
      for (int k = 0; k < VEC; ++k) {
        Welford<A> t;
        for (int y = 0; y < int(blockDim.y); ++y) {
          const A* e = sh + (y * width + threadIdx.x * VEC + k) * 3;
          t.merge(e[0], e[1], e[2]);
        }
        A* out = partial + ((c0 + k) * splits + s) * 3;
        out[0] = t.n;
        out[1] = t.mean;
        out[2] = t.m2;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Normalise + affine + activation
template <typename scalar_t, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) bn_apply_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                                            int64_t N, int64_t C, int64_t HW, int64_t chunk,
                                                            BnParams<acc_t<scalar_t>> p, Activation act,
                                                            acc_t<scalar_t> slope) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y;
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    __shared__ A coef[2];
    if (threadIdx.x == 0) {
      A mean, invstd, scale, shift;
      channel_coeffs(p, c, s == 0, mean, invstd, scale, shift);
      coef[0] = scale;
      coef[1] = shift;
    }
    __syncthreads();
    const A sc = coef[0], sf = coef[1];
    const int64_t total = N * HW, begin = s * chunk, end = min64(total, begin + chunk);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += int64_t(blockDim.x) * VEC) {
      const int64_t n = j / HW;
      const int64_t off = (n * C + c) * HW + (j - n * HW);
      const auto v = load_pack<scalar_t, VEC>(x + off);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate(act, affine(A(v.v[k]), sc, sf), slope));
      store_pack<scalar_t, VEC>(y + off, o);
    }
  } else {
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    A cf[2][VEC];  // scale, shift
    stage_channel_values<2, VEC>(reinterpret_cast<A*>(smem_raw), c0, C, [&](int64_t c, A* v) {
      A mean, invstd;
      channel_coeffs(p, c, s == 0, mean, invstd, v[0], v[1]);
    }, cf);
    if (c0 >= C) return;
    const A* sc = cf[0];
    const A* sf = cf[1];
    const int64_t rows = N * HW, begin = s * chunk, end = min64(rows, begin + chunk);
    for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
      const auto v = load_pack<scalar_t, VEC>(x + m * C + c0);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate(act, affine(A(v.v[k]), sc[k], sf[k]), slope));
      store_pack<scalar_t, VEC>(y + m * C + c0, o);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward reduction: per (channel, split) sum(g) and sum(g * (x - mean)).
template <typename scalar_t, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) bn_backward_reduce_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, int64_t N, int64_t C, int64_t HW,
    int64_t chunk, BnParams<acc_t<scalar_t>> p, Activation act, acc_t<scalar_t> slope,
    acc_t<scalar_t>* __restrict__ partial) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y, splits = gridDim.y;
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    __shared__ A coef[3];
    if (threadIdx.x == 0) {
      A mean, invstd, scale, shift;
      channel_coeffs(p, c, false, mean, invstd, scale, shift);
      coef[0] = scale;
      coef[1] = shift;
      coef[2] = mean;
    }
    __syncthreads();
    const A sc = coef[0], sf = coef[1], mu = coef[2];
    A sg = 0, sgx = 0;
    const int64_t total = N * HW, begin = s * chunk, end = min64(total, begin + chunk);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += int64_t(blockDim.x) * VEC) {
      const int64_t n = j / HW;
      const int64_t off = (n * C + c) * HW + (j - n * HW);
      const auto xv = load_pack<scalar_t, VEC>(x + off);
      const auto dv = load_pack<scalar_t, VEC>(dy + off);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input(act, affine(xk, sc, sf), slope);
        sg += gk;
        sgx += gk * (xk - mu);
      }
    }
    sg = warp_sum(sg);
    sgx = warp_sum(sgx);
    __shared__ A sh[2][kThreads / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
      sh[0][warp] = sg;
      sh[1][warp] = sgx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      A a = 0, b = 0;
      for (int i = 0; i < int(blockDim.x / 32); ++i) {
        a += sh[0][i];
        b += sh[1][i];
      }
      partial[(c * splits + s) * 2] = a;
      partial[(c * splits + s) * 2 + 1] = b;
    }
  } else {
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    A* sh = reinterpret_cast<A*>(smem_raw);  // coefficients [3][width], then sums [blockDim.y][width][2]
    const int width = blockDim.x * VEC;
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    A cf[3][VEC];  // scale, shift, mean
    stage_channel_values<3, VEC>(sh, c0, C, [&](int64_t c, A* v) {
      A invstd;
      channel_coeffs(p, c, false, v[2], invstd, v[0], v[1]);
    }, cf);
    A sg[VEC], sgx[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) sg[k] = sgx[k] = A(0);
    if (c0 < C) {
      const A* sc = cf[0];
      const A* sf = cf[1];
      const A* mu = cf[2];
      const int64_t rows = N * HW, begin = s * chunk, end = min64(rows, begin + chunk);
      for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
        const auto xv = load_pack<scalar_t, VEC>(x + m * C + c0);
        const auto dv = load_pack<scalar_t, VEC>(dy + m * C + c0);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const A xk = A(xv.v[k]);
          const A gk = A(dv.v[k]) * activation_grad_from_input(act, affine(xk, sc[k], sf[k]), slope);
          sg[k] += gk;
          sgx[k] += gk * (xk - mu[k]);
        }
      }
    }
    A* sums = sh + 3 * width;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      sums[(threadIdx.y * width + threadIdx.x * VEC + k) * 2] = sg[k];
      sums[(threadIdx.y * width + threadIdx.x * VEC + k) * 2 + 1] = sgx[k];
    }
    __syncthreads();
    if (threadIdx.y == 0 && c0 < C) {
      for (int k = 0; k < VEC; ++k) {
        A a = 0, b = 0;
        for (int yy = 0; yy < int(blockDim.y); ++yy) {
          a += sums[(yy * width + threadIdx.x * VEC + k) * 2];
          b += sums[(yy * width + threadIdx.x * VEC + k) * 2 + 1];
        }
        partial[((c0 + k) * splits + s) * 2] = a;
        partial[((c0 + k) * splits + s) * 2 + 1] = b;
      }
    }
  }
}

// Backward elementwise: grad_input (and grad_weight/grad_bias from the split-0 blocks).
//   training: dx = scale * (g - sum_g / n - (x - mean) * invstd^2 * sum_gx / n)
//   eval:     dx = scale * g
template <typename A>
__device__ void channel_backward_coeffs(const BnParams<A>& p, const A* partial, int splits, bool training, int64_t c,
                                        bool write, A* grad_weight, A* grad_bias, A out[5]) {
  A mean, invstd, scale, shift;
  channel_coeffs(p, c, false, mean, invstd, scale, shift);
  A sg = 0, sgx = 0;
  for (int s = 0; s < splits; ++s) {
    sg += partial[(c * splits + s) * 2];
    sgx += partial[(c * splits + s) * 2 + 1];
  }
  if (write && grad_weight != nullptr) {
    grad_bias[c] = sg;
    grad_weight[c] = sgx * invstd;
  }
  out[0] = scale;
  out[1] = shift;
  out[2] = mean;
  out[3] = training ? sg / p.count : A(0);
  out[4] = training ? sgx / p.count * invstd * invstd : A(0);
}

template <typename scalar_t, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) bn_backward_input_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, scalar_t* __restrict__ dx, int64_t N,
    int64_t C, int64_t HW, int64_t chunk, BnParams<acc_t<scalar_t>> p, const acc_t<scalar_t>* __restrict__ partial,
    int splits, bool training, Activation act, acc_t<scalar_t> slope, acc_t<scalar_t>* __restrict__ grad_weight,
    acc_t<scalar_t>* __restrict__ grad_bias) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y;
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    __shared__ A coef[5];
    if (threadIdx.x == 0) channel_backward_coeffs(p, partial, splits, training, c, s == 0, grad_weight, grad_bias, coef);
    __syncthreads();
    const A sc = coef[0], sf = coef[1], mu = coef[2], km = coef[3], kx = coef[4];
    const int64_t total = N * HW, begin = s * chunk, end = min64(total, begin + chunk);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += int64_t(blockDim.x) * VEC) {
      const int64_t n = j / HW;
      const int64_t off = (n * C + c) * HW + (j - n * HW);
      const auto xv = load_pack<scalar_t, VEC>(x + off);
      const auto dv = load_pack<scalar_t, VEC>(dy + off);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input(act, affine(xk, sc, sf), slope);
        o.v[k] = scalar_t(sc * (gk - km - (xk - mu) * kx));
      }
      store_pack<scalar_t, VEC>(dx + off, o);
    }
  } else {
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    A cf[5][VEC];  // scale, shift, mean, k_mean_g, k_x
    stage_channel_values<5, VEC>(reinterpret_cast<A*>(smem_raw), c0, C, [&](int64_t c, A* v) {
      channel_backward_coeffs(p, partial, splits, training, c, s == 0, grad_weight, grad_bias, v);
    }, cf);
    if (c0 >= C) return;
    const A* sc = cf[0];
    const A* sf = cf[1];
    const A* mu = cf[2];
    const A* km = cf[3];
    const A* kx = cf[4];
    const int64_t rows = N * HW, begin = s * chunk, end = min64(rows, begin + chunk);
    for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
      const auto xv = load_pack<scalar_t, VEC>(x + m * C + c0);
      const auto dv = load_pack<scalar_t, VEC>(dy + m * C + c0);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input(act, affine(xk, sc[k], sf[k]), slope);
        o.v[k] = scalar_t(sc[k] * (gk - km[k] - (xk - mu[k]) * kx[k]));
      }
      store_pack<scalar_t, VEC>(dx + m * C + c0, o);
    }
  }
}

// Synchronised BatchNorm: the per-channel results of the split kernels, merged in a fixed order.
template <typename A>
__global__ void bn_merge_stats_kernel(BnParams<A> p, int64_t C) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    A mean, invstd, scale, shift;
    channel_coeffs(p, c, true, mean, invstd, scale, shift);
  }
}

template <typename A>
__global__ void bn_sum_backward_partials_kernel(const A* __restrict__ partial, int splits, int64_t C,
                                                A* __restrict__ sum_dy, A* __restrict__ sum_dy_xmu) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    A a = 0, b = 0;
    for (int s = 0; s < splits; ++s) {
      a += partial[(c * splits + s) * 2];
      b += partial[(c * splits + s) * 2 + 1];
    }
    sum_dy[c] = a;
    sum_dy_xmu[c] = b;
  }
}

// Running statistics: one block, so num_batches_tracked is read before it is bumped. Blended
// in double and rounded once to the buffers' dtype, as the CPU op does; strided buffers are
// updated in place (a BatchNorm's buffers may be views).
template <typename R, typename A>
__global__ void bn_update_stats_kernel(R* __restrict__ running_mean, int64_t mean_stride, R* __restrict__ running_var,
                                       int64_t var_stride, int64_t* __restrict__ num_batches_tracked,
                                       const A* __restrict__ mean, const A* __restrict__ var, int64_t C,
                                       double momentum, bool cumulative, double unbias) {
  // No counter: momentum, or 0 when momentum is None too (nn.BatchNorm2d's factor then).
  const int64_t tracked = num_batches_tracked ? *num_batches_tracked + 1 : 0;
  const double f = cumulative && num_batches_tracked ? 1.0 / double(tracked) : momentum;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    R& rm = running_mean[c * mean_stride];
    R& rv = running_var[c * var_stride];
    rm = R((1.0 - f) * double(rm) + f * double(mean[c]));
    rv = R((1.0 - f) * double(rv) + f * double(var[c]) * unbias);
  }
  __syncthreads();
  if (threadIdx.x == 0 && num_batches_tracked) *num_batches_tracked = tracked;
}

// ---------------------------------------------------------------------------------------
// Host side
Geometry geometry_of(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), layout_of(x) == at::MemoryFormat::ChannelsLast};
}

template <typename scalar_t>
bool can_vectorize(const Geometry& g, std::initializer_list<const void*> ptrs) {
  constexpr int vec = vec_width<scalar_t>();
  if ((g.cl ? g.C : g.HW) % vec != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// Shared memory the NHWC kernels need (NCHW kernels use static shared memory).
template <typename A>
size_t nhwc_smem(const Plan& p, int vec, int per_thread_values, int per_channel_values) {
  const size_t width = size_t(p.block.x) * vec;
  return (size_t(p.block.y) * width * per_thread_values + width * per_channel_values) * sizeof(A);
}

// Calls f(std::integral_constant<int, VEC>, std::integral_constant<bool, CL>).
template <typename scalar_t, typename F>
void dispatch_layout(const Geometry& g, bool vectorize, F&& f) {
  constexpr int V = vec_width<scalar_t>();
  if (g.cl) {
    if (vectorize) f(std::integral_constant<int, V>(), std::true_type());
    else f(std::integral_constant<int, 1>(), std::true_type());
  } else {
    if (vectorize) f(std::integral_constant<int, V>(), std::false_type());
    else f(std::integral_constant<int, 1>(), std::false_type());
  }
}

template <typename A>
const A* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<A>() : nullptr;
}

void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count);

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cuda(
    const at::Tensor& input_, const c10::optional<at::Tensor>& weight_, const c10::optional<at::Tensor>& bias_,
    const c10::optional<at::Tensor>& running_mean_, const c10::optional<at::Tensor>& running_var_,
    const c10::optional<at::Tensor>& num_batches_tracked, bool training, c10::optional<double> momentum, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  const bool use_batch =
      check_batch_norm_act_args(input_, weight_, bias_, running_mean_, running_var_, num_batches_tracked,
                                training, act);
  DeviceGuard guard(input_.device());
  const auto fmt = layout_of(input_);
  const at::Tensor input = input_.contiguous(fmt);
  const Geometry g = geometry_of(input);
  TORCH_CHECK(g.C < (int64_t(1) << 31), "fastgan: too many channels: ", g.C);
  const auto sdt = stats_dtype(input);
  at::Tensor out = at::empty_like(input, input.options(), fmt);
  at::Tensor mean = at::empty({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::empty({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) {  // eval returns the running statistics, as the CPU op does
    if (!use_batch) mean.copy_(*running_mean_), var.copy_(*running_var_);
    return {out, mean, var};
  }
  const at::Tensor weight = as_stats(weight_, input), bias = as_stats(bias_, input);
  const at::Tensor rmean = use_batch ? at::Tensor() : as_stats(running_mean_, input);
  const at::Tensor rvar = use_batch ? at::Tensor() : as_stats(running_var_, input);
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_act_cuda", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    const bool vectorize = can_vectorize<scalar_t>(g, {x, y});
    dispatch_layout<scalar_t>(g, vectorize, [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan(g, VEC);
      at::Tensor partial;
      if (use_batch) {
        partial = at::empty({g.C * plan.splits * 3}, input.options().dtype(sdt));
        const size_t smem = CL ? nhwc_smem<A>(plan, VEC, 3, 0) : 0;
        launch(bn_stats_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream, x, g.N, g.C, g.HW,
             plan.chunk, partial.data_ptr<A>());
      }
      BnParams<A> p{use_batch ? partial.const_data_ptr<A>() : nullptr, plan.splits, A(g.N * g.HW),
                    ptr_or_null<A>(rmean), ptr_or_null<A>(rvar), ptr_or_null<A>(weight), ptr_or_null<A>(bias),
                    A(eps), mean.data_ptr<A>(), var.data_ptr<A>()};
      const size_t smem = CL ? nhwc_smem<A>(plan, VEC, 0, 2) : 0;
      launch(bn_apply_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream, x, y, g.N, g.C, g.HW,
             plan.chunk, p, act, A(negative_slope));
    });
  });
  if (training && running_mean_.has_value() && running_mean_->defined()) {
    at::Tensor running_mean = *running_mean_, running_var = *running_var_;
    update_running_stats(running_mean, running_var, num_batches_tracked, mean, var, momentum, g.N * g.HW);
  }
  return {out, mean, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& save_mean_, const at::Tensor& save_var_,
    bool training, double eps, c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, save_mean_, save_var_);
  const at::Tensor &input = b.input, &grad_out = b.grad_out, &mean = b.mean, &var = b.var, &weight = b.weight,
                   &bias = b.bias;
  const Geometry g = geometry_of(input);
  const auto sdt = stats_dtype(input);
  at::Tensor grad_input = at::empty_like(input, input.options(), b.fmt);
  at::Tensor grad_weight = at::empty({g.C}, input.options().dtype(sdt));
  at::Tensor grad_bias = at::empty({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) return {grad_input, grad_weight.zero_(), grad_bias.zero_()};
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_act_backward_cuda", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_input.data_ptr<scalar_t>();
    const bool vectorize = can_vectorize<scalar_t>(g, {x, dy, dx});
    dispatch_layout<scalar_t>(g, vectorize, [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan(g, VEC);
      at::Tensor partial = at::empty({g.C * plan.splits * 2}, input.options().dtype(sdt));
      BnParams<A> p{nullptr, plan.splits, A(g.N * g.HW), mean.const_data_ptr<A>(), var.const_data_ptr<A>(),
                    ptr_or_null<A>(weight), ptr_or_null<A>(bias), A(eps), nullptr, nullptr};
      size_t smem = CL ? nhwc_smem<A>(plan, VEC, 2, 3) : 0;
      launch(bn_backward_reduce_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream,
          dy, x, g.N, g.C, g.HW, plan.chunk, p, act, A(negative_slope), partial.data_ptr<A>());
      smem = CL ? nhwc_smem<A>(plan, VEC, 0, 5) : 0;
      launch(bn_backward_input_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream,
          dy, x, dx, g.N, g.C, g.HW, plan.chunk, p, partial.const_data_ptr<A>(), plan.splits, training, act,
          A(negative_slope), grad_weight.data_ptr<A>(), grad_bias.data_ptr<A>());
    });
  });
  return {grad_input, grad_weight, grad_bias};
}

// One launch, no host synchronisation: the counter is read and bumped on the device.
void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var,
                          const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                          const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  DeviceGuard guard(running_mean.device());
  const bool has_counter = num_batches_tracked.has_value() && num_batches_tracked->defined();
  int64_t* counter = has_counter ? num_batches_tracked->data_ptr<int64_t>() : nullptr;
  const at::Tensor mean = save_mean.contiguous(), var = save_var.to(save_mean.scalar_type()).contiguous();
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "bn_update_stats", [&] {
    using R = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean.scalar_type(), "bn_update_stats_batch", [&] {
      launch(bn_update_stats_kernel<R, scalar_t>, 1, 256, 0, stream, running_mean.data_ptr<R>(),
             running_mean.stride(0), running_var.data_ptr<R>(), running_var.stride(0), counter,
             mean.const_data_ptr<scalar_t>(), var.const_data_ptr<scalar_t>(), running_mean.numel(),
             momentum.value_or(0.0), !momentum.has_value(), double(count) / double(count - 1));
    });
  });
}

void batch_norm_update_stats_cuda(at::Tensor& running_mean, at::Tensor& running_var,
                                  const c10::optional<at::Tensor>& num_batches_tracked, const at::Tensor& save_mean,
                                  const at::Tensor& save_var, c10::optional<double> momentum, int64_t count) {
  check_update_stats_args(running_mean, running_var, num_batches_tracked, save_mean, save_var, count);
  update_running_stats(running_mean, running_var, num_batches_tracked, save_mean, save_var, momentum, count);
}

// --- Synchronised BatchNorm: the same kernels, split where the caller all-reduces. ---------

unsigned per_channel_blocks(int64_t C) { return unsigned(std::min<int64_t>(ceil_div(C, 256), 65535)); }

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cuda(const at::Tensor& input_) {
  check_bn_input(input_);
  DeviceGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(layout_of(input_));
  const Geometry g = geometry_of(input);
  TORCH_CHECK(g.C < (int64_t(1) << 31), "fastgan: too many channels: ", g.C);
  const auto sdt = stats_dtype(input);
  at::Tensor mean = at::zeros({g.C}, input.options().dtype(sdt));
  at::Tensor var = at::zeros({g.C}, input.options().dtype(sdt));
  if (input.numel() == 0) return {mean, var};  // a rank with no samples adds count 0
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "batch_norm_stats_cuda", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    dispatch_layout<scalar_t>(g, can_vectorize<scalar_t>(g, {x}), [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan(g, VEC);
      at::Tensor partial = at::empty({g.C * plan.splits * 3}, input.options().dtype(sdt));
      const size_t smem = CL ? nhwc_smem<A>(plan, VEC, 3, 0) : 0;
      launch(bn_stats_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream, x, g.N, g.C, g.HW,
             plan.chunk, partial.data_ptr<A>());
      BnParams<A> p{partial.const_data_ptr<A>(), plan.splits, A(g.N * g.HW), nullptr, nullptr, nullptr, nullptr,
                    A(0), mean.data_ptr<A>(), var.data_ptr<A>()};
      launch(bn_merge_stats_kernel<A>, per_channel_blocks(g.C), 256, 0, stream, p, g.C);
    });
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_act_backward_reduce_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_, double eps,
    c10::string_view activation, double negative_slope) {
  const Activation act = parse_activation(activation);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor sum_dy = at::zeros({g.C}, b.input.options().dtype(sdt));
  at::Tensor sum_dy_xmu = at::zeros({g.C}, b.input.options().dtype(sdt));
  if (b.input.numel() == 0) return {sum_dy, sum_dy_xmu};
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_reduce_cuda", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = b.input.const_data_ptr<scalar_t>();
    const scalar_t* dy = b.grad_out.const_data_ptr<scalar_t>();
    dispatch_layout<scalar_t>(g, can_vectorize<scalar_t>(g, {x, dy}), [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan(g, VEC);
      at::Tensor partial = at::empty({g.C * plan.splits * 2}, b.input.options().dtype(sdt));
      BnParams<A> p{nullptr, plan.splits, A(g.N * g.HW), b.mean.const_data_ptr<A>(), b.var.const_data_ptr<A>(),
                    ptr_or_null<A>(b.weight), ptr_or_null<A>(b.bias), A(eps), nullptr, nullptr};
      const size_t smem = CL ? nhwc_smem<A>(plan, VEC, 2, 3) : 0;
      launch(bn_backward_reduce_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream,
          dy, x, g.N, g.C, g.HW, plan.chunk, p, act, A(negative_slope), partial.data_ptr<A>());
      launch(bn_sum_backward_partials_kernel<A>, per_channel_blocks(g.C), 256, 0, stream,
          partial.const_data_ptr<A>(), plan.splits, g.C, sum_dy.data_ptr<A>(), sum_dy_xmu.data_ptr<A>());
    });
  });
  return {sum_dy, sum_dy_xmu};
}

at::Tensor batch_norm_act_backward_elemt_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const c10::optional<at::Tensor>& weight_,
    const c10::optional<at::Tensor>& bias_, const at::Tensor& mean_, const at::Tensor& var_,
    const at::Tensor& mean_dy_, const at::Tensor& mean_dy_xmu_, double eps, c10::string_view activation,
    double negative_slope) {
  const Activation act = parse_activation(activation);
  check_backward_elemt_sums(input_, mean_dy_, mean_dy_xmu_);
  DeviceGuard guard(input_.device());
  const BackwardInputs b = backward_inputs(grad_out_, input_, weight_, bias_, mean_, var_);
  const Geometry g = geometry_of(b.input);
  const auto sdt = stats_dtype(b.input);
  at::Tensor grad_input = at::empty_like(b.input, b.input.options(), b.fmt);
  if (b.input.numel() == 0) return grad_input;
  // The global means as the [C][1 split][2] partials bn_backward_input_kernel merges; a count
  // of 1 because they are already divided by the global count.
  const at::Tensor sums = at::stack({mean_dy_.to(sdt), mean_dy_xmu_.to(sdt)}, 1).contiguous();
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.input.scalar_type(), "batch_norm_act_backward_elemt_cuda", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* x = b.input.const_data_ptr<scalar_t>();
    const scalar_t* dy = b.grad_out.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_input.data_ptr<scalar_t>();
    dispatch_layout<scalar_t>(g, can_vectorize<scalar_t>(g, {x, dy, dx}), [&](auto vec_c, auto cl_c) {
      constexpr int VEC = decltype(vec_c)::value;
      constexpr bool CL = decltype(cl_c)::value;
      const Plan plan = make_plan(g, VEC);
      BnParams<A> p{nullptr, plan.splits, A(1), b.mean.const_data_ptr<A>(), b.var.const_data_ptr<A>(),
                    ptr_or_null<A>(b.weight), ptr_or_null<A>(b.bias), A(eps), nullptr, nullptr};
      const size_t smem = CL ? nhwc_smem<A>(plan, VEC, 0, 5) : 0;
      launch(bn_backward_input_kernel<scalar_t, VEC, CL>, plan.grid, plan.block, smem, stream,
          dy, x, dx, g.N, g.C, g.HW, plan.chunk, p, sums.const_data_ptr<A>(), 1, true, act, A(negative_slope),
          nullptr, nullptr);
    });
  });
  return grad_input;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) {
  m.impl("batch_norm_act", &cuda::batch_norm_act_cuda);
  m.impl("batch_norm_act_backward", &cuda::batch_norm_act_backward_cuda);
  m.impl("batch_norm_update_stats", &cuda::batch_norm_update_stats_cuda);
  m.impl("batch_norm_stats", &cuda::batch_norm_stats_cuda);
  m.impl("batch_norm_act_backward_reduce", &cuda::batch_norm_act_backward_reduce_cuda);
  m.impl("batch_norm_act_backward_elemt", &cuda::batch_norm_act_backward_elemt_cuda);
}

}  // namespace fastgan
