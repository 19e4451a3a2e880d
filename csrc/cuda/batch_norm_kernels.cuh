// Device code of fused BatchNorm + activation (host wrappers: batch_norm_act.cu).
//
// Training forward, three launches:
//   bn_stats     one pass over x: per-(channel, split) Welford partials;
//   bn_finalize  one block: merges each channel's partials in a fixed order (a warp per
//                channel), writes the saved statistics, the per-channel scale and shift, and
//                the running-stat update with num_batches_tracked;
//   bn_apply     one pass over x and y: y = act(x * scale + shift).
// Eval: bn_apply alone, each thread folding the running statistics into scale and shift.
// Backward, three launches: bn_backward_reduce (per-(channel, split) sums of g and g*(x-mean),
// with g = grad_out * act'(pre-activation) recomputed from x, no mask stored),
// bn_backward_sums (merges them per channel, grad_weight and grad_bias), bn_backward_input.
// Nothing is merged more than once, and every merge runs in a fixed order (no float atomics),
// so results are bit-identical from run to run.
//
// Both layouts are walked in place: NCHW with one channel per block (blockIdx.x) and its N*H*W
// elements split over blockIdx.y; NHWC with a tile of channels across threadIdx.x and rows
// across threadIdx.y. A thread moves 16 bytes at a time where the shape and alignment allow
// (VEC > 1), one element otherwise. The activation is a template parameter, so element loops
// carry no switch.
#pragma once

#include "common.cuh"

namespace fastgan {
namespace cuda {
namespace bn {

constexpr int kThreads = 256;
constexpr int kFinalizeThreads = 512;

// The statistics a channel is normalised with, and its affine parameters (may be nullptr).
template <typename A>
struct ChannelParams {
  const A* mean;
  const A* var;
  const A* weight;
  const A* bias;
  A eps;
};

template <typename A>
__device__ __forceinline__ void affine_of(const ChannelParams<A>& p, int64_t c, A& scale, A& shift, A& invstd) {
  invstd = A(1) / ::sqrt(p.var[c] + p.eps);
  scale = (p.weight ? p.weight[c] : A(1)) * invstd;
  shift = (p.bias ? p.bias[c] : A(0)) - p.mean[c] * scale;
}

// Walks one NCHW channel's elements j in [0, N*HW) with a fixed stride, tracking the image n and
// the offset within it incrementally: two divisions per thread instead of one per pack.
struct NchwCursor {
  int64_t n, r, q, rem;
  __device__ __forceinline__ NchwCursor(int64_t j, int64_t stride, int64_t HW)
      : n(j / HW), r(j - (j / HW) * HW), q(stride / HW), rem(stride - (stride / HW) * HW) {}
  __device__ __forceinline__ int64_t offset(int64_t C, int64_t c, int64_t HW) const { return (n * C + c) * HW + r; }
  __device__ __forceinline__ void advance(int64_t HW) {
    n += q;
    r += rem;
    if (r >= HW) {
      r -= HW;
      ++n;
    }
  }
};

// Per-thread statistics as sums around the thread's first value: no division per element
// (a Welford push divides), and no cancellation when the mean is large against the spread,
// since the shift is a sample of the data.
template <typename A>
struct ShiftedSums {
  A shift = 0, s1 = 0, s2 = 0;
  int64_t n = 0;
  __device__ __forceinline__ void push(A x) {
    if (n == 0) shift = x;
    const A d = x - shift;
    s1 += d;
    s2 += d * d;
    ++n;
  }
  __device__ __forceinline__ Welford<A> welford() const {
    Welford<A> w;
    if (n == 0) return w;
    w.n = A(n);
    const A d = s1 / w.n;
    w.mean = shift + d;
    const A m2 = s2 - s1 * d;
    w.m2 = m2 > A(0) ? m2 : A(0);
    return w;
  }
};

// Welford triples (count, mean, M2).
template <typename A>
__device__ __forceinline__ void tree_merge_rows(A* sh, int width, int col, bool active) {
  tree_fold_rows<3>(sh, width, col, active, [](A* mine, const A* other) {
    Welford<A> w{mine[0], mine[1], mine[2]};
    w.merge(other[0], other[1], other[2]);
    mine[0] = w.n;
    mine[1] = w.mean;
    mine[2] = w.m2;
  });
}

// Pairs of sums.
template <typename A>
__device__ __forceinline__ void tree_sum_rows(A* sh, int width, int col, bool active) {
  tree_fold_rows<2>(sh, width, col, active, [](A* mine, const A* other) {
    mine[0] += other[0];
    mine[1] += other[1];
  });
}

// ---------------------------------------------------------------------------------------
// Statistics: partial[(c * splits + s) * 3 + {0, 1, 2}] = (count, mean, M2).
template <typename scalar_t, int VEC, bool CL>
__global__ void __launch_bounds__(kThreads) stats_kernel(const scalar_t* __restrict__ x, int64_t N, int64_t C,
                                                         int64_t HW, int64_t chunk, acc_t<scalar_t>* __restrict__ partial) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y, splits = gridDim.y;
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk), stride = int64_t(blockDim.x) * VEC;
    ShiftedSums<A> acc;
    NchwCursor at(begin + int64_t(threadIdx.x) * VEC, stride, HW);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += stride, at.advance(HW)) {
      const auto v = load_pack<scalar_t, VEC>(x + at.offset(C, c, HW));
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc.push(A(v.v[k]));
    }
    Welford<A> w = warp_merge(acc.welford());
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
    const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
    const bool active = c0 < C;
    ShiftedSums<A> acc[VEC];
    if (active) {
      for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
        const auto v = load_pack<scalar_t, VEC>(x + m * C + c0);
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k].push(A(v.v[k]));
      }
    }
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    A* sh = reinterpret_cast<A*>(smem_raw);
    const int width = blockDim.x * VEC;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const Welford<A> w = acc[k].welford();
      A* e = sh + (threadIdx.y * width + threadIdx.x * VEC + k) * 3;
      e[0] = w.n;
      e[1] = w.mean;
      e[2] = w.m2;
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) tree_merge_rows(sh, width, threadIdx.x * VEC + k, active);
    if (threadIdx.y == 0 && active) {
      for (int k = 0; k < VEC && c0 + k < C; ++k) {
        const A* e = sh + (threadIdx.x * VEC + k) * 3;
        A* out = partial + ((c0 + k) * splits + s) * 3;
        out[0] = e[0];
        out[1] = e[1];
        out[2] = e[2];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Finalise, one block: a warp per channel merges its splits (lane l takes splits l, l+32, ...,
// then a fixed shuffle tree), and lane 0 writes the channel's results.
template <typename A>
struct FinalizeArgs {
  const A* partial;
  int splits;
  int64_t C;
  A count;         // N*H*W
  const A* weight;  // may be nullptr (affine=False)
  const A* bias;
  A eps;
  A* save_mean;  // the batch mean and biased variance
  A* save_var;
  A* coef;  // [C][2] scale, shift; nullptr when only the statistics are wanted
};

// nn.BatchNorm2d's running-stat update, blended in double and rounded once to the buffers'
// dtype (as the CPU op does). Strided buffers are updated in place.
template <typename R>
struct RunningStats {
  R* mean;
  int64_t mean_stride;
  R* var;
  int64_t var_stride;
  int64_t* num_batches_tracked;  // may be nullptr
  double momentum;
  bool cumulative;  // momentum=None: average over num_batches_tracked
  double unbias;    // count / (count - 1)
};

// The factor a running-stat update blends with: momentum, 1 / batches with momentum=None, and 0
// when there is no counter either (nn.BatchNorm2d's factor then). Every thread reads the counter
// before the caller's barrier, after which one thread stores `tracked`.
template <typename R>
__device__ __forceinline__ double running_factor(const RunningStats<R>& r, int64_t& tracked) {
  tracked = r.num_batches_tracked ? *r.num_batches_tracked + 1 : 0;
  return r.cumulative && r.num_batches_tracked ? 1.0 / double(tracked) : r.momentum;
}

template <typename R, typename A>
__device__ __forceinline__ void blend_running(const RunningStats<R>& r, double f, int64_t c, A mean, A var) {
  R& rm = r.mean[c * r.mean_stride];
  R& rv = r.var[c * r.var_stride];
  rm = R((1.0 - f) * double(rm) + f * double(mean));
  rv = R((1.0 - f) * double(rv) + f * double(var) * r.unbias);
}

template <typename A, typename R>
__global__ void __launch_bounds__(kFinalizeThreads) finalize_kernel(FinalizeArgs<A> a, RunningStats<R> r, bool update) {
  int64_t tracked = 0;
  const double f = update ? running_factor(r, tracked) : 0.0;
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t c = threadIdx.x >> 5; c < a.C; c += warps) {
    Welford<A> w;
    const A* q = a.partial + c * a.splits * 3;
    for (int s = lane; s < a.splits; s += 32) w.merge(q[3 * s], q[3 * s + 1], q[3 * s + 2]);
    w = warp_merge(w);
    if (lane != 0) continue;
    const A mean = w.mean, var = w.m2 / a.count;
    a.save_mean[c] = mean;
    a.save_var[c] = var;
    if (a.coef != nullptr) {
      const A invstd = A(1) / ::sqrt(var + a.eps);
      const A scale = (a.weight ? a.weight[c] : A(1)) * invstd;
      a.coef[2 * c] = scale;
      a.coef[2 * c + 1] = (a.bias ? a.bias[c] : A(0)) - mean * scale;
    }
    if (update) blend_running(r, f, c, mean, var);
  }
  if (!update) return;
  __syncthreads();
  if (threadIdx.x == 0 && r.num_batches_tracked) *r.num_batches_tracked = tracked;
}

// The running-stat update on its own (the batch_norm_update_stats op).
template <typename R, typename A>
__global__ void update_stats_kernel(RunningStats<R> r, const A* __restrict__ mean, const A* __restrict__ var,
                                    int64_t C) {
  int64_t tracked;
  const double f = running_factor(r, tracked);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) blend_running(r, f, c, mean[c], var[c]);
  __syncthreads();
  if (threadIdx.x == 0 && r.num_batches_tracked) *r.num_batches_tracked = tracked;
}

// ---------------------------------------------------------------------------------------
// Normalise + affine + activation. Training passes coef (from finalize); eval passes
// coef = nullptr and the running statistics in p, which the split-0 blocks also copy to
// save_mean / save_var.
template <typename A>
struct ApplyArgs {
  const A* coef;
  ChannelParams<A> p;
  A* save_mean;
  A* save_var;
};

template <typename A>
__device__ __forceinline__ void apply_coeffs(const ApplyArgs<A>& a, int64_t c, bool save, A& scale, A& shift) {
  if (a.coef != nullptr) {
    scale = a.coef[2 * c];
    shift = a.coef[2 * c + 1];
    return;
  }
  A invstd;
  affine_of(a.p, c, scale, shift, invstd);
  if (save && a.save_mean != nullptr) {
    a.save_mean[c] = a.p.mean[c];
    a.save_var[c] = a.p.var[c];
  }
}

template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void __launch_bounds__(kThreads) apply_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                                         int64_t N, int64_t C, int64_t HW, int64_t chunk,
                                                         ApplyArgs<acc_t<scalar_t>> a, acc_t<scalar_t> slope) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf;
    apply_coeffs(a, c, s == 0 && threadIdx.x == 0, sc, sf);
    const int64_t stride = int64_t(blockDim.x) * VEC;
    NchwCursor at(begin + int64_t(threadIdx.x) * VEC, stride, HW);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += stride, at.advance(HW)) {
      const int64_t off = at.offset(C, c, HW);
      const auto v = load_pack<scalar_t, VEC>(x + off);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(affine(A(v.v[k]), sc, sf), slope));
      store_pack<scalar_t, VEC>(y + off, o);
    }
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    if (c0 >= C) return;
    A sc[VEC], sf[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) apply_coeffs(a, c0 + k, s == 0 && threadIdx.y == 0, sc[k], sf[k]);
    for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
      const auto v = load_pack<scalar_t, VEC>(x + m * C + c0);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = scalar_t(activate_t<ACT>(affine(A(v.v[k]), sc[k], sf[k]), slope));
      store_pack<scalar_t, VEC>(y + m * C + c0, o);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward reduction: partial[(c * splits + s) * 2 + {0, 1}] = (sum g, sum g * (x - mean)).
template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void __launch_bounds__(kThreads) backward_reduce_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, int64_t N, int64_t C, int64_t HW, int64_t chunk,
    ChannelParams<acc_t<scalar_t>> p, acc_t<scalar_t> slope, acc_t<scalar_t>* __restrict__ partial) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y, splits = gridDim.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, invstd;
    affine_of(p, c, sc, sf, invstd);
    const A mu = p.mean[c];
    A sg = 0, sgx = 0;
    const int64_t stride = int64_t(blockDim.x) * VEC;
    NchwCursor at(begin + int64_t(threadIdx.x) * VEC, stride, HW);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += stride, at.advance(HW)) {
      const int64_t off = at.offset(C, c, HW);
      const auto xv = load_pack<scalar_t, VEC>(x + off);
      const auto dv = load_pack<scalar_t, VEC>(dy + off);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
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
      A t0 = 0, t1 = 0;
      for (int i = 0; i < int(blockDim.x / 32); ++i) {
        t0 += sh[0][i];
        t1 += sh[1][i];
      }
      partial[(c * splits + s) * 2] = t0;
      partial[(c * splits + s) * 2 + 1] = t1;
    }
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    const bool active = c0 < C;
    A sg[VEC], sgx[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) sg[k] = sgx[k] = A(0);
    if (active) {
      A sc[VEC], sf[VEC], mu[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        A invstd;
        affine_of(p, c0 + k, sc[k], sf[k], invstd);
        mu[k] = p.mean[c0 + k];
      }
      for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
        const auto xv = load_pack<scalar_t, VEC>(x + m * C + c0);
        const auto dv = load_pack<scalar_t, VEC>(dy + m * C + c0);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const A xk = A(xv.v[k]);
          const A gk = A(dv.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
          sg[k] += gk;
          sgx[k] += gk * (xk - mu[k]);
        }
      }
    }
    FASTGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
    A* sh = reinterpret_cast<A*>(smem_raw);  // [blockDim.y][width][2]
    const int width = blockDim.x * VEC;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      A* e = sh + (threadIdx.y * width + threadIdx.x * VEC + k) * 2;
      e[0] = sg[k];
      e[1] = sgx[k];
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) tree_sum_rows(sh, width, threadIdx.x * VEC + k, active);
    if (threadIdx.y == 0 && active) {
      for (int k = 0; k < VEC && c0 + k < C; ++k) {
        const A* e = sh + (threadIdx.x * VEC + k) * 2;
        partial[((c0 + k) * splits + s) * 2] = e[0];
        partial[((c0 + k) * splits + s) * 2 + 1] = e[1];
      }
    }
  }
}

// Per channel: sum_dy and sum_dy_xmu from the splits (a warp per channel, fixed order), and
// grad_bias = sum_dy, grad_weight = sum_dy_xmu * invstd where asked for.
template <typename A>
__global__ void __launch_bounds__(kThreads) backward_sums_kernel(const A* __restrict__ partial, int splits, int64_t C,
                                                                 ChannelParams<A> p, A* __restrict__ sum_dy,
                                                                 A* __restrict__ sum_dy_xmu, A* __restrict__ grad_weight,
                                                                 A* __restrict__ grad_bias) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t c = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); c < C; c += warps) {
    A t0 = 0, t1 = 0;
    for (int s = lane; s < splits; s += 32) {
      t0 += partial[(c * splits + s) * 2];
      t1 += partial[(c * splits + s) * 2 + 1];
    }
    t0 = warp_sum(t0);
    t1 = warp_sum(t1);
    if (lane != 0) continue;
    sum_dy[c] = t0;
    sum_dy_xmu[c] = t1;
    if (grad_weight != nullptr) {
      grad_bias[c] = t0;
      grad_weight[c] = t1 * (A(1) / ::sqrt(p.var[c] + p.eps));
    }
  }
}

// grad_input:  training: dx = scale * (g - mean_dy - (x - mean) * invstd^2 * mean_dy_xmu)
//              eval:     dx = scale * g
// with mean_dy = sum_dy * inv_count (inv_count = 1 when the caller passes means).
template <typename A>
struct InputGradArgs {
  ChannelParams<A> p;
  const A* sum_dy;
  const A* sum_dy_xmu;
  A inv_count;
  bool training;
};

template <typename A>
__device__ __forceinline__ void input_grad_coeffs(const InputGradArgs<A>& a, int64_t c, A& sc, A& sf, A& mu, A& km,
                                                  A& kx) {
  A invstd;
  affine_of(a.p, c, sc, sf, invstd);
  mu = a.p.mean[c];
  km = a.training ? a.sum_dy[c] * a.inv_count : A(0);
  kx = a.training ? a.sum_dy_xmu[c] * a.inv_count * invstd * invstd : A(0);
}

template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void __launch_bounds__(kThreads) backward_input_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, scalar_t* __restrict__ dx, int64_t N, int64_t C,
    int64_t HW, int64_t chunk, InputGradArgs<acc_t<scalar_t>> a, acc_t<scalar_t> slope) {
  using A = acc_t<scalar_t>;
  const int s = blockIdx.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, mu, km, kx;
    input_grad_coeffs(a, c, sc, sf, mu, km, kx);
    const int64_t stride = int64_t(blockDim.x) * VEC;
    NchwCursor at(begin + int64_t(threadIdx.x) * VEC, stride, HW);
    for (int64_t j = begin + int64_t(threadIdx.x) * VEC; j < end; j += stride, at.advance(HW)) {
      const int64_t off = at.offset(C, c, HW);
      const auto xv = load_pack<scalar_t, VEC>(x + off);
      const auto dv = load_pack<scalar_t, VEC>(dy + off);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
        o.v[k] = scalar_t(sc * (gk - km - (xk - mu) * kx));
      }
      store_pack<scalar_t, VEC>(dx + off, o);
    }
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    if (c0 >= C) return;
    A sc[VEC], sf[VEC], mu[VEC], km[VEC], kx[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) input_grad_coeffs(a, c0 + k, sc[k], sf[k], mu[k], km[k], kx[k]);
    for (int64_t m = begin + threadIdx.y; m < end; m += blockDim.y) {
      const auto xv = load_pack<scalar_t, VEC>(x + m * C + c0);
      const auto dv = load_pack<scalar_t, VEC>(dy + m * C + c0);
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A xk = A(xv.v[k]);
        const A gk = A(dv.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
        o.v[k] = scalar_t(sc[k] * (gk - km[k] - (xk - mu[k]) * kx[k]));
      }
      store_pack<scalar_t, VEC>(dx + m * C + c0, o);
    }
  }
}

}  // namespace bn
}  // namespace cuda
}  // namespace fastgan
