// Device code of fused BatchNorm + activation (host wrappers: batch_norm_act.cu). One header of
// kernels (over 450 lines) because the host wrappers instantiate all of them per dtype together.
//
// Training forward, two launches:
//   stats   one pass over x: per thread, sums of d = x - shift and d^2 around the channel's
//           first element, added over the block (fold_rows) into one partial per channel and
//           split; the last block of each channel tile to finish (an integer ticket) adds the
//           tile's partials in a fixed order with the whole block (fold_partials), and writes the
//           saved statistics, the per-channel scale and shift and the running-stat update; the
//           last tile moves num_batches_tracked;
//   apply   one pass over x and y: y = act(x * scale + shift).
// Eval: apply alone, each thread folding the running statistics into scale and shift.
// Backward, two launches: backward_reduce (per-(channel, split) sums of g and g*(x-mean), with
// g = grad_out * act'(pre-activation) recomputed from x, no mask stored; the last block of each
// tile adds them into sum_dy, sum_dy_xmu, grad_weight and grad_bias), backward_input.
// The reductions' channel tiles are at most kFinishChannels wide (plan_reduction_rows), so that
// C / 32 last blocks finish in parallel, each in at most kFinishRounds rounds of loads.
// Nothing is merged more than once, and every merge runs in a fixed order (no float atomics),
// so results are bit-identical from run to run.
//
// Both layouts are walked in place: NCHW with one channel per block (blockIdx.x) and its N*H*W
// elements split over blockIdx.y; NHWC with a tile of channels across threadIdx.x and rows
// across threadIdx.y. A thread moves 16 bytes at a time where the shape and alignment allow
// (VEC > 1), one element otherwise, with kLoadsInFlight loads issued before their uses
// (walk_unrolled). The activation is a template parameter, so element loops carry no switch.
#pragma once

#include "common.cuh"

namespace fastgan {
namespace cuda {
namespace bn {

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

// Walks one NCHW channel's elements j in [0, N*HW) with a fixed stride (a walk_unrolled
// cursor), tracking the image n and the offset within it incrementally: two divisions per
// thread instead of one per pack.
struct NchwCursor {
  int64_t index, step, n, r, q, rem, C, c, HW;
  __device__ __forceinline__ NchwCursor(int64_t j, int64_t stride, int64_t C_, int64_t c_, int64_t HW_)
      : index(j),
        step(stride),
        n(j / HW_),
        r(j - (j / HW_) * HW_),
        q(stride / HW_),
        rem(stride - (stride / HW_) * HW_),
        C(C_),
        c(c_),
        HW(HW_) {}
  __device__ __forceinline__ int64_t offset() const { return (n * C + c) * HW + r; }
  __device__ __forceinline__ void advance() {
    index += step;
    n += q;
    r += rem;
    if (r >= HW) {
      r -= HW;
      ++n;
    }
  }
};

// Where split s's K partial sums of channel c live: NCHW [C][K][splits] (a tile is one channel,
// whose last block reads its splits across lanes: consecutive words); channels_last
// [splits][K][C] (a tile's last block reads its channels across lanes: consecutive words).
template <int K, bool CL>
__device__ __forceinline__ int64_t partial_index(int64_t c, int64_t s, int k, int64_t C, int64_t splits) {
  return CL ? (s * K + k) * C + c : (c * K + k) * splits + s;
}

// Loads a tile's partials for fold_partials: channel c0 + ci, split s.
template <int K, bool CL, typename A>
struct PartialLoader {
  const A* partial;
  int64_t c0, C, splits;
  __device__ __forceinline__ Sums<A, K> operator()(int ci, int s) const {
    Sums<A, K> t;
#pragma unroll
    for (int k = 0; k < K; ++k) t.v[k] = __ldcg(partial + partial_index<K, CL>(c0 + ci, s, k, C, splits));
    return t;
  }
};

// ---------------------------------------------------------------------------------------
// What the last block of a channel tile writes once the tile's statistics are added up. The
// partials are sums of d = x - shift and d^2, the shift being the channel's first element
// (x[0, c, 0, 0]), the same for every split: they add across splits with no division, and
// there is no cancellation when the mean is large against the spread.
template <typename A>
struct FinalizeArgs {
  int splits;
  A count;          // N*H*W
  const A* weight;  // may be nullptr (affine=False)
  const A* bias;
  A eps;
  A* save_mean;  // the batch mean and biased variance
  A* save_var;
  A* coef;  // [C][2] scale, shift; nullptr when only the statistics are wanted
};

// nn.BatchNorm2d's running-stat update, blended in double and rounded once to the buffers'
// dtype (as the CPU op does). Strided buffers are updated in place. The buffers' dtype is a
// runtime value, read once per channel, so the statistics kernels need no instance per dtype.
enum class BufferType : int { Float, Double, Half, BFloat16 };

struct RunningStats {
  void* mean;  // nullptr: no update
  int64_t mean_stride;
  void* var;
  int64_t var_stride;
  BufferType type;
  int64_t* num_batches_tracked;  // may be nullptr
  double momentum;
  bool cumulative;  // momentum=None: average over num_batches_tracked
  double unbias;    // count / (count - 1)
};

// The factor a running-stat update blends with: momentum, 1 / batches with momentum=None, and 0
// when there is no counter either (nn.BatchNorm2d's factor then). `tracked` is the counter's
// next value, which one thread stores once every reader is done.
__device__ __forceinline__ double running_factor(const RunningStats& r, int64_t& tracked) {
  tracked = r.num_batches_tracked ? *r.num_batches_tracked + 1 : 0;
  return r.cumulative && r.num_batches_tracked ? 1.0 / double(tracked) : r.momentum;
}

// Channel c's running statistics as they were, and the blend written back.
template <typename R>
__device__ __forceinline__ void read_running_as(const RunningStats& r, int64_t c, double& mean, double& var) {
  mean = double(static_cast<const R*>(r.mean)[c * r.mean_stride]);
  var = double(static_cast<const R*>(r.var)[c * r.var_stride]);
}

template <typename R>
__device__ __forceinline__ void write_running_as(const RunningStats& r, int64_t c, double mean, double var) {
  static_cast<R*>(r.mean)[c * r.mean_stride] = R(mean);
  static_cast<R*>(r.var)[c * r.var_stride] = R(var);
}

// Calls f(R()) with R the running buffers' element type.
template <typename F>
__device__ __forceinline__ void with_buffer_type(BufferType type, F f) {
  switch (type) {
    case BufferType::Float: f(float()); break;
    case BufferType::Double: f(double()); break;
    case BufferType::Half: f(at::Half()); break;
    case BufferType::BFloat16: f(at::BFloat16()); break;
  }
}

__device__ __forceinline__ void read_running(const RunningStats& r, int64_t c, double& mean, double& var) {
  with_buffer_type(r.type, [&](auto tag) { read_running_as<decltype(tag)>(r, c, mean, var); });
}

// Blends the batch statistics into the old running ones (m0, v0, read before).
__device__ __forceinline__ void blend_running(const RunningStats& r, double f, int64_t c, double m0, double v0,
                                              double mean, double var) {
  const double m = (1.0 - f) * m0 + f * mean, v = (1.0 - f) * v0 + f * var * r.unbias;
  with_buffer_type(r.type, [&](auto tag) { write_running_as<decltype(tag)>(r, c, m, v); });
}

// In the last block of the tile of channels [c0, c0 + channels) (at most kFinishChannels):
// adds their splits' partials (load: a PartialLoader) and writes everything per channel; then
// the last tile to get here moves num_batches_tracked, after every tile has read it. shift_of(c):
// the channel's shift. tiles_done: a zeroed counter. Every thread of the block calls it.
template <typename A, typename Load, typename Shift>
__device__ __forceinline__ void finish_statistics(const FinalizeArgs<A>& a, const RunningStats& r, int64_t c0,
                                                  int channels, Load load, Shift shift_of, unsigned int* tiles_done) {
  int64_t tracked = 0;
  const bool update = r.mean != nullptr;
  const double f = update ? running_factor(r, tracked) : 0.0;
  // What thread ci's channel needs besides the sums, loaded before the fold so that the loads
  // overlap it (fold_partials calls finish for channel ci in thread ci).
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  const int64_t mine = c0 + tid;
  A weight = A(1), bias = A(0), shift = A(0);
  double m0 = 0.0, v0 = 0.0;
  if (tid < channels) {
    if (a.weight) weight = a.weight[mine];
    if (a.bias) bias = a.bias[mine];
    shift = shift_of(mine);
    if (update) read_running(r, mine, m0, v0);
  }
  fold_partials<2, A>(channels, a.splits, load, [&](int ci, const A(&t)[2]) {
    const int64_t c = c0 + ci;
    const A d = t[0] / a.count, m2 = t[1] - t[0] * d;
    const A mean = shift + d, var = (m2 > A(0) ? m2 : A(0)) / a.count;
    a.save_mean[c] = mean;
    a.save_var[c] = var;
    if (a.coef != nullptr) {
      const A scale = weight * (A(1) / ::sqrt(var + a.eps));
      a.coef[2 * c] = scale;
      a.coef[2 * c + 1] = bias - mean * scale;
    }
    if (update) blend_running(r, f, c, m0, v0, double(mean), double(var));
  });
  if (!update || r.num_batches_tracked == nullptr) return;
  if (last_block_to_finish(tiles_done, gridDim.x) && threadIdx.x == 0 && threadIdx.y == 0)
    *r.num_batches_tracked = tracked;
}

// The running-stat update on its own (the batch_norm_update_stats op).
template <typename A>
__global__ void FASTGAN_KERNEL_BOUNDS update_stats_kernel(RunningStats r, const A* __restrict__ mean,
                                                          const A* __restrict__ var, int64_t C) {
  int64_t tracked;
  const double f = running_factor(r, tracked);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    double m0, v0;
    read_running(r, c, m0, v0);
    blend_running(r, f, c, m0, v0, double(mean[c]), double(var[c]));
  }
  __syncthreads();
  if (threadIdx.x == 0 && r.num_batches_tracked) *r.num_batches_tracked = tracked;
}

// ---------------------------------------------------------------------------------------
// Statistics: each block's sums of d = x - shift and d^2 per channel into the partials
// (partial_index<2, CL>), then the last block of each channel tile finishes the tile
// (finish_statistics). tickets: gridDim.x + 1 zeroed counters, one per tile and one for the tiles.
template <typename scalar_t, int VEC, bool CL>
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t)
    stats_kernel(const scalar_t* __restrict__ x, int64_t N, int64_t C, int64_t HW, int64_t chunk,
                 acc_type<scalar_t>* partial, FinalizeArgs<acc_type<scalar_t>> fin, RunningStats run,
                 unsigned int* tickets) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int s = blockIdx.y, splits = gridDim.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); };
  const auto write = [&](int64_t c, const A(&t)[2]) {
    partial[partial_index<2, CL>(c, s, 0, C, splits)] = t[0];
    partial[partial_index<2, CL>(c, s, 1, C, splits)] = t[1];
  };
  // The channel's first element: every split of every tile uses the same shift.
  const auto shift_of = [&](int64_t c) { return A(x[CL ? c : c * HW]); };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    const A shift = shift_of(c);
    A sums[2][1] = {{A(0)}, {A(0)}};
    walk_unrolled<kLoadsInFlight>(NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW),
                                  end, load, [&](int64_t, const P& v) {
#pragma unroll
                                    for (int k = 0; k < VEC; ++k) {
                                      const A d = A(v.v[k]) - shift;
                                      sums[0][0] += d;
                                      sums[1][0] += d * d;
                                    }
                                  });
    fold_rows(sums, 1, [&](int, int, const A(&t)[2]) { write(c, t); });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_statistics(fin, run, c, 1, PartialLoader<2, false, A>{partial, c, C, splits}, shift_of,
                        tickets + gridDim.x);
  } else {
    const int tx = int(blockDim.x);
    const int64_t tile = int64_t(blockIdx.x) * tx * VEC, c0 = tile + int64_t(threadIdx.x) * VEC;
    A sums[2][VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) sums[0][k] = sums[1][k] = A(0);
    if (c0 < C) {
      const P first = load(c0);
      A shift[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) shift[k] = A(first.v[k]);
      walk_unrolled<kLoadsInFlight>(RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load,
                                    [&](int64_t, const P& v) {
#pragma unroll
                                      for (int k = 0; k < VEC; ++k) {
                                        const A d = A(v.v[k]) - shift[k];
                                        sums[0][k] += d;
                                        sums[1][k] += d * d;
                                      }
                                    });
    }
    fold_rows(sums, tx, [&](int xi, int k, const A(&t)[2]) {
      const int64_t c = tile + int64_t(xi) * VEC + k;
      if (c < C) write(c, t);
    });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_statistics(fin, run, tile, int(min64(C - tile, int64_t(tx) * VEC)),
                        PartialLoader<2, true, A>{partial, tile, C, splits}, shift_of, tickets + gridDim.x);
  }
}

// ---------------------------------------------------------------------------------------
// Normalise + affine + activation. Training passes coef (from the statistics kernel); eval passes
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
  A invstd;
  affine_of(a.p, c, scale, shift, invstd);
  if (save && a.save_mean != nullptr) {
    a.save_mean[c] = a.p.mean[c];
    a.save_var[c] = a.p.var[c];
  }
}

// The scale and shift of channels [c0, c0 + VEC): from coef ([C][2], 16-byte aligned, c0 a
// multiple of VEC) in as few 16-byte loads as they fill (4 for 8 channels in fp32), or from the
// running statistics in eval.
template <int VEC, typename A>
__device__ __forceinline__ void apply_coeffs_of(const ApplyArgs<A>& a, int64_t c0, bool save, A (&scale)[VEC],
                                                A (&shift)[VEC]) {
  if (a.coef == nullptr) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) apply_coeffs(a, c0 + k, save, scale[k], shift[k]);
    return;
  }
  constexpr int kValues = 2 * VEC, kPerLoad = kValues * sizeof(A) >= 16 ? 16 / sizeof(A) : kValues;
  static_assert(kValues % kPerLoad == 0, "whole loads");
  Pack<A, kPerLoad> v[kValues / kPerLoad];
#pragma unroll
  for (int i = 0; i < kValues / kPerLoad; ++i) v[i] = load_pack<A, kPerLoad>(a.coef + 2 * c0 + i * kPerLoad);
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    scale[k] = v[(2 * k) / kPerLoad].v[(2 * k) % kPerLoad];
    shift[k] = v[(2 * k + 1) / kPerLoad].v[(2 * k + 1) % kPerLoad];
  }
}

template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t)
    apply_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t N, int64_t C, int64_t HW,
                 int64_t chunk, ApplyArgs<acc_type<scalar_t>> a, acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int s = blockIdx.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc1[1], sf1[1];
    apply_coeffs_of<1>(a, c, s == 0 && threadIdx.x == 0, sc1, sf1);
    const A sc = sc1[0], sf = sf1[0];
    walk_unrolled<kLoadsInFlight>(NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW),
                                  end, load, [&](int64_t off, const P& v) {
                                    P o;
#pragma unroll
                                    for (int k = 0; k < VEC; ++k)
                                      o.v[k] = scalar_t(activate_t<ACT>(affine(A(v.v[k]), sc, sf), slope));
                                    store_pack<scalar_t, VEC>(y + off, o);
                                  });
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    if (c0 >= C) return;
    A sc[VEC], sf[VEC];
    apply_coeffs_of<VEC>(a, c0, s == 0 && threadIdx.y == 0, sc, sf);
    walk_unrolled<kLoadsInFlight>(RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load,
                                  [&](int64_t off, const P& v) {
                                    P o;
#pragma unroll
                                    for (int k = 0; k < VEC; ++k)
                                      o.v[k] = scalar_t(activate_t<ACT>(affine(A(v.v[k]), sc[k], sf[k]), slope));
                                    store_pack<scalar_t, VEC>(y + off, o);
                                  });
  }
}

// ---------------------------------------------------------------------------------------
// What the last block of a channel tile writes once the tile's backward sums are folded:
// sum_dy and sum_dy_xmu, and grad_bias = sum_dy, grad_weight = sum_dy_xmu * invstd where asked.
template <typename A>
struct BackwardSumsArgs {
  int splits;
  A* sum_dy;
  A* sum_dy_xmu;
  A* grad_weight;  // nullptr: not wanted
  A* grad_bias;
};

// In the last block of the tile of channels [c0, c0 + channels): adds their splits' partials
// (load: a PartialLoader) and writes the sums and the parameters' gradients.
template <typename A, typename Load>
__device__ __forceinline__ void finish_backward_sums(const BackwardSumsArgs<A>& a, const ChannelParams<A>& p,
                                                     int64_t c0, int channels, Load load) {
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  A invstd = A(0);  // loaded before the fold, which calls finish for channel tid in thread tid
  if (a.grad_weight != nullptr && tid < channels) invstd = A(1) / ::sqrt(p.var[c0 + tid] + p.eps);
  fold_partials<2, A>(channels, a.splits, load, [&](int ci, const A(&t)[2]) {
    const int64_t c = c0 + ci;
    a.sum_dy[c] = t[0];
    a.sum_dy_xmu[c] = t[1];
    if (a.grad_weight != nullptr) {
      a.grad_bias[c] = t[0];
      a.grad_weight[c] = t[1] * invstd;
    }
  });
}

// x and grad_out at one position, loaded together (the backward kernels' walks).
template <typename scalar_t, int VEC>
struct PackPair {
  Pack<scalar_t, VEC> x, dy;
};

// Channels per thread in the backward kernels: 16 bytes of each tensor per position, except
// 16-bit channels_last, which takes 4 channels (8 bytes): with 8, the channels' 24-40
// coefficients and 16 sums left no registers under 64 for a second position in flight, and
// backward_reduce spilled in its element loop even at one (ptxas: 20 bytes stored, 28 loaded).
template <typename scalar_t, bool CL>
constexpr int backward_vec_width() {
  return CL && sizeof(scalar_t) == 2 ? 4 : vec_width<scalar_t>();
}

// Positions a backward kernel's thread loads ahead (two loads each: x and grad_out): 64 bytes
// in flight per thread, as the forward kernels' kLoadsInFlight 16-byte loads are.
template <typename scalar_t, int VEC>
constexpr int kPairsInFlight = VEC * sizeof(scalar_t) >= 16 ? kLoadsInFlight / 2 : kLoadsInFlight;

// Backward reduction: each block's sum g and sum g * (x - mean) per channel into the partials
// (partial_index<2, CL>), then the last block of each channel tile (tickets: gridDim.x zeroed
// counters) finishes the tile.
template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t)
    backward_reduce_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, int64_t N, int64_t C,
                           int64_t HW, int64_t chunk, ChannelParams<acc_type<scalar_t>> p, acc_type<scalar_t> slope,
                           acc_type<scalar_t>* partial, BackwardSumsArgs<acc_type<scalar_t>> sums_args,
                           unsigned int* tickets) {
  using A = acc_type<scalar_t>;
  using PP = PackPair<scalar_t, VEC>;
  const int s = blockIdx.y, splits = gridDim.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) {
    return PP{load_pack<scalar_t, VEC>(x + off), load_pack<scalar_t, VEC>(dy + off)};
  };
  const auto write = [&](int64_t c, const A(&t)[2]) {
    partial[partial_index<2, CL>(c, s, 0, C, splits)] = t[0];
    partial[partial_index<2, CL>(c, s, 1, C, splits)] = t[1];
  };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, invstd;
    affine_of(p, c, sc, sf, invstd);
    const A mu = p.mean[c];
    A sums[2][1] = {{A(0)}, {A(0)}};
    walk_unrolled<kPairsInFlight<scalar_t, VEC>>(
        NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW), end, load,
        [&](int64_t, const PP& v) {
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            const A xk = A(v.x.v[k]);
            const A gk = A(v.dy.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
            sums[0][0] += gk;
            sums[1][0] += gk * (xk - mu);
          }
        });
    fold_rows(sums, 1, [&](int, int, const A(&t)[2]) { write(c, t); });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_backward_sums(sums_args, p, c, 1, PartialLoader<2, false, A>{partial, c, C, splits});
  } else {
    const int tx = int(blockDim.x);
    const int64_t tile = int64_t(blockIdx.x) * tx * VEC, c0 = tile + int64_t(threadIdx.x) * VEC;
    A sums[2][VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) sums[0][k] = sums[1][k] = A(0);
    if (c0 < C) {
      A sc[VEC], sf[VEC], mu[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        A invstd;
        affine_of(p, c0 + k, sc[k], sf[k], invstd);
        mu[k] = p.mean[c0 + k];
      }
      walk_unrolled<kPairsInFlight<scalar_t, VEC>>(
          RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load, [&](int64_t, const PP& v) {
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
              const A xk = A(v.x.v[k]);
              const A gk = A(v.dy.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
              sums[0][k] += gk;
              sums[1][k] += gk * (xk - mu[k]);
            }
          });
    }
    fold_rows(sums, tx, [&](int xi, int k, const A(&t)[2]) {
      const int64_t c = tile + int64_t(xi) * VEC + k;
      if (c < C) write(c, t);
    });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_backward_sums(sums_args, p, tile, int(min64(C - tile, int64_t(tx) * VEC)),
                           PartialLoader<2, true, A>{partial, tile, C, splits});
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
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t)
    backward_input_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, scalar_t* __restrict__ dx,
                          int64_t N, int64_t C, int64_t HW, int64_t chunk, InputGradArgs<acc_type<scalar_t>> a,
                          acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  using PP = PackPair<scalar_t, VEC>;
  const int s = blockIdx.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) {
    return PP{load_pack<scalar_t, VEC>(x + off), load_pack<scalar_t, VEC>(dy + off)};
  };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, mu, km, kx;
    input_grad_coeffs(a, c, sc, sf, mu, km, kx);
    walk_unrolled<kPairsInFlight<scalar_t, VEC>>(
        NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW), end, load,
        [&](int64_t off, const PP& v) {
          P o;
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            const A xk = A(v.x.v[k]);
            const A gk = A(v.dy.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
            o.v[k] = scalar_t(sc * (gk - km - (xk - mu) * kx));
          }
          store_pack<scalar_t, VEC>(dx + off, o);
        });
  } else {
    const int64_t c0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
    if (c0 >= C) return;
    A sc[VEC], sf[VEC], mu[VEC], km[VEC], kx[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) input_grad_coeffs(a, c0 + k, sc[k], sf[k], mu[k], km[k], kx[k]);
    walk_unrolled<kPairsInFlight<scalar_t, VEC>>(
        RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load, [&](int64_t off, const PP& v) {
          P o;
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            const A xk = A(v.x.v[k]);
            const A gk = A(v.dy.v[k]) * activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
            o.v[k] = scalar_t(sc[k] * (gk - km[k] - (xk - mu[k]) * kx[k]));
          }
          store_pack<scalar_t, VEC>(dx + off, o);
        });
  }
}

}  // namespace bn
}  // namespace cuda
}  // namespace fastgan
