// Helpers shared by the CUDA kernels: accumulation types, 16-byte packs, Welford merges.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../fastgan.h"
#include "runtime.cuh"

namespace fastgan {
namespace cuda {

// fp32 accumulation for fp32/fp16/bf16, fp64 for fp64.
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <typename T> using acc_t = typename Acc<T>::type;

// VEC consecutive elements moved as one 16-byte (or smaller) access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p) {
  FASTGAN_CHECK_ALIGNED(p, sizeof(Pack<T, VEC>));
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, VEC>& v) {
  FASTGAN_CHECK_ALIGNED(p, sizeof(Pack<T, VEC>));
  *reinterpret_cast<Pack<T, VEC>*>(p) = v;
}

// Elements per 16-byte access.
template <typename T> constexpr int vec_width() { return 16 / sizeof(T) > 0 ? int(16 / sizeof(T)) : 1; }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Running (count, mean, M2). Counts are small per thread; merges follow Chan et al.
template <typename A>
struct Welford {
  A n = 0, mean = 0, m2 = 0;
  __device__ __forceinline__ void push(A x) {
    n += A(1);
    const A d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
  }
  __device__ __forceinline__ void merge(A nb, A mb, A m2b) {
    if (nb == A(0)) return;
    if (n == A(0)) {  // the general formula would compute d * d * 0, NaN once d * d overflows
      n = nb;
      mean = mb;
      m2 = m2b;
      return;
    }
    const A nn = n + nb, d = mb - mean, f = nb / nn;
    mean += d * f;
    m2 += m2b + d * d * n * f;
    n = nn;
  }
};

template <typename A>
__device__ __forceinline__ Welford<A> warp_merge(Welford<A> w) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const A n = __shfl_down_sync(0xffffffffu, w.n, off);
    const A m = __shfl_down_sync(0xffffffffu, w.mean, off);
    const A q = __shfl_down_sync(0xffffffffu, w.m2, off);
    w.merge(n, m, q);
  }
  return w;
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Calls f(ActivationTag<ACT>()) on the host: one kernel per activation, so element loops carry
// no switch.
template <typename F>
void dispatch_act(Activation act, F&& f) {
  dispatch_activation(act, [&](auto tag) {
    f(tag);
    return 0;
  });
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The smallest power of two >= v (1 for v <= 1), in 64 bits so that no v up to 2^62 overflows.
inline int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Blocks of `threads` threads that fill every multiprocessor once.
inline int64_t blocks_to_fill(int threads) {
  const auto* prop = device_props();
  return int64_t(prop->multiProcessorCount) * std::max(1, prop->maxThreadsPerMultiProcessor / threads);
}

// How a problem of rows of C contiguous channels (channels_last activations, a Linear layer's
// rows of features) is spread over the grid: threadIdx.x across packs of VEC channels, so a
// warp reads consecutive addresses; threadIdx.y across rows; blockIdx.x across channel tiles;
// blockIdx.y splits the rows into chunks, enough of them to fill the device but each at
// least four rows per thread.
struct GridPlan {
  dim3 grid, block;
  int64_t chunk;  // rows (or, NCHW BatchNorm, elements) per split
  int splits;
};

inline GridPlan plan_rows(int64_t rows, int64_t C, int vec, int threads) {
  const int64_t cvecs = ceil_div(C, vec);
  const int tx = int(std::min<int64_t>(32, next_pow2(cvecs)));
  const int ty = threads / tx;
  const int64_t cblocks = ceil_div(cvecs, tx);
  const int64_t max_splits = std::max<int64_t>(1, rows / (int64_t(ty) * 4));
  const int64_t s = std::min<int64_t>({std::max<int64_t>(1, ceil_div(blocks_to_fill(threads), cblocks)), max_splits,
                                       1024});
  GridPlan p;
  p.chunk = std::max<int64_t>(1, ceil_div(rows, s));
  p.splits = int(std::max<int64_t>(1, ceil_div(rows, p.chunk)));
  p.block = dim3(unsigned(tx), unsigned(ty));
  p.grid = dim3(unsigned(cblocks), unsigned(p.splits));
  return p;
}

// Folds rows [0, blockDim.y) of a block's shared array into row 0, as a tree: sh holds
// [blockDim.y][width][K] and combine(mine, other) folds other's K values into mine. Every
// thread of the block must call it (it holds the barriers).
template <int K, typename A, typename Combine>
__device__ __forceinline__ void tree_fold_rows(A* sh, int width, int col, bool active, Combine combine) {
  for (int stride = int(blockDim.y) / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (active && int(threadIdx.y) < stride)
      combine(sh + (threadIdx.y * width + col) * K, sh + ((threadIdx.y + stride) * width + col) * K);
  }
}

// A zeroed int counter for last-block reductions on the current stream (elementwise.cu): each
// kernel that takes tickets from it leaves it at zero again.
at::Tensor reduction_ticket(const at::Tensor& like);

}  // namespace cuda
}  // namespace fastgan
