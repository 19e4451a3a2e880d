// Device code of fused BatchNorm + activation (host wrappers: batch_norm_act.cu). One header of
// kernels (over 450 lines) because the host wrappers instantiate all of them per dtype together.
//
// Training forward, two launches:
//   stats   one pass over x: per thread, sums around a shift its block shares, added over the
//           block (fold_rows) into one (count, mean, M2) partial per channel and split; the last block of each
//           channel tile to finish (an integer ticket) merges the tile's partials in a fixed
//           order with the whole block, and writes the saved statistics, the per-channel
//           scale and shift and the running-stat update; the last tile moves
//           num_batches_tracked;
//   apply   one pass over x and y: y = act(x * scale + shift).
// Eval: apply alone, each thread folding the running statistics into scale and shift.
// Backward, two launches: backward_reduce (per-(channel, split) sums of g and g*(x-mean), with
// g = grad_out * act'(pre-activation) recomputed from x, no mask stored; the last block of each
// tile folds them into sum_dy, sum_dy_xmu, grad_weight and grad_bias), backward_input.
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
      : index(j), step(stride), n(j / HW_), r(j - (j / HW_) * HW_), q(stride / HW_), rem(stride - (stride / HW_) * HW_),
        C(C_), c(c_), HW(HW_) {}
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

// A split's statistics from sums around a shift that every thread of the block shares (a
// sample of the split's data, so there is no cancellation when the mean is large against the
// spread): sums add across threads, with no division per element or per merge.
template <typename A>
__device__ __forceinline__ Welford<A> welford_of_sums(A count, A shift, A s1, A s2) {
  const A d = s1 / count, m2 = s2 - s1 * d;
  return {count, shift + d, m2 > A(0) ? m2 : A(0)};
}

// ---------------------------------------------------------------------------------------
// What the last block of a channel tile writes once the tile's statistics are merged.
template <typename A>
struct FinalizeArgs {
  const A* partial;  // [C][splits][3] (count, mean, M2)
  int splits;
  A count;           // N*H*W
  const A* weight;   // may be nullptr (affine=False)
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

template <typename R>
__device__ __forceinline__ void blend_as(const RunningStats& r, double f, int64_t c, double mean, double var) {
  R& rm = static_cast<R*>(r.mean)[c * r.mean_stride];
  R& rv = static_cast<R*>(r.var)[c * r.var_stride];
  const double m0 = double(rm), v0 = double(rv);  // both loads before either store
  rm = R((1.0 - f) * m0 + f * mean);
  rv = R((1.0 - f) * v0 + f * var * r.unbias);
}

__device__ __forceinline__ void blend_running(const RunningStats& r, double f, int64_t c, double mean, double var) {
  switch (r.type) {
    case BufferType::Float: blend_as<float>(r, f, c, mean, var); break;
    case BufferType::Double: blend_as<double>(r, f, c, mean, var); break;
    case BufferType::Half: blend_as<at::Half>(r, f, c, mean, var); break;
    case BufferType::BFloat16: blend_as<at::BFloat16>(r, f, c, mean, var); break;
  }
}

// In the last block of the tile of channels [c0, c0 + channels): merges their splits and
// writes everything per channel; then the last tile to get here moves num_batches_tracked,
// after every tile has read it. tiles_done: a zeroed counter. Every thread of the block calls it.
template <typename A>
__device__ __forceinline__ void finish_statistics(const FinalizeArgs<A>& a, const RunningStats& r, int64_t c0,
                                                  int channels, unsigned int* tiles_done) {
  int64_t tracked = 0;
  const bool update = r.mean != nullptr;
  const double f = update ? running_factor(r, tracked) : 0.0;
  fold_splits<Welford<A>>(
      channels, a.splits,
      [&](int c, int s) {
        const A* q = a.partial + ((c0 + c) * a.splits + s) * 3;
        return Welford<A>{__ldcg(q), __ldcg(q + 1), __ldcg(q + 2)};
      },
      [&](int ci, const Welford<A>& w) {
        const int64_t c = c0 + ci;
        const A weight = a.weight ? a.weight[c] : A(1), bias = a.bias ? a.bias[c] : A(0);
        const A mean = w.mean, var = w.m2 / a.count;
        a.save_mean[c] = mean;
        a.save_var[c] = var;
        if (a.coef != nullptr) {
          const A scale = weight * (A(1) / ::sqrt(var + a.eps));
          a.coef[2 * c] = scale;
          a.coef[2 * c + 1] = bias - mean * scale;
        }
        if (update) blend_running(r, f, c, double(mean), double(var));
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
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) blend_running(r, f, c, double(mean[c]), double(var[c]));
  __syncthreads();
  if (threadIdx.x == 0 && r.num_batches_tracked) *r.num_batches_tracked = tracked;
}

// ---------------------------------------------------------------------------------------
// Statistics: partial[(c * splits + s) * 3 + {0, 1, 2}] = (count, mean, M2), then the last block
// of each channel tile finishes the tile (finish_statistics). tickets: gridDim.x + 1 zeroed
// counters, one per tile and one for the tiles.
template <typename scalar_t, int VEC, bool CL>
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t)
    stats_kernel(const scalar_t* __restrict__ x, int64_t N, int64_t C, int64_t HW, int64_t chunk,
                 acc_type<scalar_t>* partial, FinalizeArgs<acc_type<scalar_t>> fin, RunningStats run, unsigned int* tickets) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const int s = blockIdx.y, splits = gridDim.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const A count = A(end - begin);
  const auto load = [&](int64_t off) { return load_pack<scalar_t, VEC>(x + off); };
  const auto write = [&](int64_t c, const Welford<A>& w) {
    A* out = partial + (c * splits + s) * 3;
    out[0] = w.n;
    out[1] = w.mean;
    out[2] = w.m2;
    __threadfence();
  };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    const NchwCursor first(begin, 0, C, c, HW);
    const A shift = A(x[first.offset()]);  // the split's first element, the same in every thread
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
    fold_rows(sums, 1, [&](int, int, const A (&t)[2]) { write(c, welford_of_sums(count, shift, t[0], t[1])); });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_statistics(fin, run, c, 1, tickets + gridDim.x);
  } else {
    const int tx = int(blockDim.x);
    const int64_t tile = int64_t(blockIdx.x) * tx * VEC, c0 = tile + int64_t(threadIdx.x) * VEC;
    // Per column, the split's first row (every thread of the block reads the same values).
    const auto shift_of = [&](int64_t c) { return A(x[begin * C + c]); };
    A sums[2][VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) sums[0][k] = sums[1][k] = A(0);
    if (c0 < C) {
      A shift[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) shift[k] = shift_of(c0 + k);
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
    fold_rows(sums, tx, [&](int xi, int k, const A (&t)[2]) {
      const int64_t c = tile + int64_t(xi) * VEC + k;
      if (c < C) write(c, welford_of_sums(count, shift_of(c), t[0], t[1]));
    });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_statistics(fin, run, tile, int(min64(C - tile, int64_t(tx) * VEC)), tickets + gridDim.x);
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
    A sc, sf;
    apply_coeffs(a, c, s == 0 && threadIdx.x == 0, sc, sf);
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
#pragma unroll
    for (int k = 0; k < VEC; ++k) apply_coeffs(a, c0 + k, s == 0 && threadIdx.y == 0, sc[k], sf[k]);
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
  const A* partial;  // [C][splits][2]
  int splits;
  A* sum_dy;
  A* sum_dy_xmu;
  A* grad_weight;  // nullptr: not wanted
  A* grad_bias;
};

template <typename A>
__device__ __forceinline__ void finish_backward_sums(const BackwardSumsArgs<A>& a, const ChannelParams<A>& p,
                                                     int64_t c0, int channels) {
  using Sum2 = Sums<A, 2>;
  fold_splits<Sum2>(
      channels, a.splits,
      [&](int c, int s) {
        const A* q = a.partial + ((c0 + c) * a.splits + s) * 2;
        Sum2 t;
        t.v[0] = __ldcg(q);
        t.v[1] = __ldcg(q + 1);
        return t;
      },
      [&](int ci, const Sum2& t) {
        const int64_t c = c0 + ci;
        const A var = p.var[c];
        a.sum_dy[c] = t.v[0];
        a.sum_dy_xmu[c] = t.v[1];
        if (a.grad_weight != nullptr) {
          a.grad_bias[c] = t.v[0];
          a.grad_weight[c] = t.v[1] * (A(1) / ::sqrt(var + p.eps));
        }
      });
}

// x and grad_out at one position, loaded together (the backward kernels' walks).
template <typename scalar_t, int VEC>
struct PackPair {
  Pack<scalar_t, VEC> x, dy;
};

// Positions a backward kernel's thread loads ahead (two loads each: x and grad_out). With 8
// channels per thread (16-bit channels_last), their 24 coefficients and 16 sums leave no room
// under 64 registers for more than one (ptxas spilled 56-252 bytes at two), so those keep two
// loads in flight instead of four.
template <int VEC, bool CL>
constexpr int kPairsInFlight = CL && VEC >= 8 ? 1 : kLoadsInFlight / 2;

// Backward reduction: partial[(c * splits + s) * 2 + {0, 1}] = (sum g, sum g * (x - mean)), then
// the last block of each channel tile (tickets: gridDim.x zeroed counters) finishes the tile.
template <typename scalar_t, int VEC, bool CL, Activation ACT>
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t) backward_reduce_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, int64_t N, int64_t C, int64_t HW, int64_t chunk,
    ChannelParams<acc_type<scalar_t>> p, acc_type<scalar_t> slope, acc_type<scalar_t>* partial,
    BackwardSumsArgs<acc_type<scalar_t>> sums_args, unsigned int* tickets) {
  using A = acc_type<scalar_t>;
  using PP = PackPair<scalar_t, VEC>;
  const int s = blockIdx.y, splits = gridDim.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) { return PP{load_pack<scalar_t, VEC>(x + off), load_pack<scalar_t, VEC>(dy + off)}; };
  const auto write = [&](int64_t c, const A (&t)[2]) {
    partial[(c * splits + s) * 2] = t[0];
    partial[(c * splits + s) * 2 + 1] = t[1];
    __threadfence();
  };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, invstd;
    affine_of(p, c, sc, sf, invstd);
    const A mu = p.mean[c];
    A sums[2][1] = {{A(0)}, {A(0)}};
    walk_unrolled<kPairsInFlight<VEC, CL>>(NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW),
                                  end, load, [&](int64_t, const PP& v) {
#pragma unroll
                                    for (int k = 0; k < VEC; ++k) {
                                      const A xk = A(v.x.v[k]);
                                      const A gk = A(v.dy.v[k]) *
                                                   activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
                                      sums[0][0] += gk;
                                      sums[1][0] += gk * (xk - mu);
                                    }
                                  });
    fold_rows(sums, 1, [&](int, int, const A (&t)[2]) { write(c, t); });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y)) finish_backward_sums(sums_args, p, c, 1);
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
      walk_unrolled<kPairsInFlight<VEC, CL>>(RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load,
                                    [&](int64_t, const PP& v) {
#pragma unroll
                                      for (int k = 0; k < VEC; ++k) {
                                        const A xk = A(v.x.v[k]);
                                        const A gk = A(v.dy.v[k]) *
                                                     activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
                                        sums[0][k] += gk;
                                        sums[1][k] += gk * (xk - mu[k]);
                                      }
                                    });
    }
    fold_rows(sums, tx, [&](int xi, int k, const A (&t)[2]) {
      const int64_t c = tile + int64_t(xi) * VEC + k;
      if (c < C) write(c, t);
    });
    if (last_block_to_finish(tickets + blockIdx.x, gridDim.y))
      finish_backward_sums(sums_args, p, tile, int(min64(C - tile, int64_t(tx) * VEC)));
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
__global__ void FASTGAN_KERNEL_BOUNDS_OF(scalar_t) backward_input_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, scalar_t* __restrict__ dx, int64_t N, int64_t C,
    int64_t HW, int64_t chunk, InputGradArgs<acc_type<scalar_t>> a, acc_type<scalar_t> slope) {
  using A = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  using PP = PackPair<scalar_t, VEC>;
  const int s = blockIdx.y;
  const int64_t begin = s * chunk, end = min64(N * HW, begin + chunk);
  const auto load = [&](int64_t off) { return PP{load_pack<scalar_t, VEC>(x + off), load_pack<scalar_t, VEC>(dy + off)}; };
  if constexpr (!CL) {
    const int64_t c = blockIdx.x;
    A sc, sf, mu, km, kx;
    input_grad_coeffs(a, c, sc, sf, mu, km, kx);
    walk_unrolled<kPairsInFlight<VEC, CL>>(NchwCursor(begin + int64_t(threadIdx.x) * VEC, int64_t(blockDim.x) * VEC, C, c, HW),
                                  end, load, [&](int64_t off, const PP& v) {
                                    P o;
#pragma unroll
                                    for (int k = 0; k < VEC; ++k) {
                                      const A xk = A(v.x.v[k]);
                                      const A gk = A(v.dy.v[k]) *
                                                   activation_grad_from_input_t<ACT>(affine(xk, sc, sf), slope);
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
    walk_unrolled<kPairsInFlight<VEC, CL>>(RowCursor(begin + threadIdx.y, blockDim.y, C, c0), end, load,
                                  [&](int64_t off, const PP& v) {
                                    P o;
#pragma unroll
                                    for (int k = 0; k < VEC; ++k) {
                                      const A xk = A(v.x.v[k]);
                                      const A gk = A(v.dy.v[k]) *
                                                   activation_grad_from_input_t<ACT>(affine(xk, sc[k], sf[k]), slope);
                                      o.v[k] = scalar_t(sc[k] * (gk - km[k] - (xk - mu[k]) * kx[k]));
                                    }
                                    store_pack<scalar_t, VEC>(dx + off, o);
                                  });
  }
}

}  // namespace bn
}  // namespace cuda
}  // namespace fastgan
