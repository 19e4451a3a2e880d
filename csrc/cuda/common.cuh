// Helpers shared by the CUDA kernels: accumulation types, 16-byte packs, Welford merges.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../fastgan.h"
#include "runtime.cuh"

namespace fastgan {
namespace cuda {

// Every kernel runs blocks of kThreads threads and is compiled with
// __launch_bounds__(kThreads, blocks per SM): ptxas then keeps it at or under 64 registers (4
// blocks), so that many blocks are resident per multiprocessor, and the grid planners size
// grids in whole waves of exactly that many. (Sized for the 2048 threads an SM could hold,
// grids of kernels using 40-74 registers ran in 1.3-2.6 waves.) The fp64 BatchNorm kernels
// need up to 74 registers and would spill at 64: they get 3 blocks (85 registers). ptxas's
// report, checked by tests/test_kernel_resources.py, shows what each kernel got.
constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 4;
template <typename scalar_t>
constexpr int kBlocksPerSmOf = sizeof(scalar_t) == 8 ? 3 : kBlocksPerSm;
#define FASTGAN_KERNEL_BOUNDS __launch_bounds__(::fastgan::cuda::kThreads, ::fastgan::cuda::kBlocksPerSm)
#define FASTGAN_KERNEL_BOUNDS_OF(T) __launch_bounds__(::fastgan::cuda::kThreads, ::fastgan::cuda::kBlocksPerSmOf<T>)

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
  __device__ __forceinline__ void merge(const Welford& o) { merge(o.n, o.mean, o.m2); }
  __device__ __forceinline__ Welford shfl_down(int off) const {
    return {__shfl_down_sync(0xffffffffu, n, off), __shfl_down_sync(0xffffffffu, mean, off),
            __shfl_down_sync(0xffffffffu, m2, off)};
  }
};

// K running sums (the BatchNorm backward's sum g and sum g * (x - mean); a bias gradient).
template <typename A, int K>
struct Sums {
  A v[K] = {};
  __device__ __forceinline__ void merge(const Sums& o) {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] += o.v[k];
  }
  __device__ __forceinline__ Sums shfl_down(int off) const {
    Sums r;
#pragma unroll
    for (int k = 0; k < K; ++k) r.v[k] = __shfl_down_sync(0xffffffffu, v[k], off);
    return r;
  }
};

// Folds a warp's values into lane 0 in a fixed shuffle tree (T: Welford or Sums).
template <typename T>
__device__ __forceinline__ T warp_fold(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v.merge(v.shfl_down(off));
  return v;
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

// Blocks of kThreads threads that fill every multiprocessor once (one wave).
inline int64_t blocks_to_fill(int blocks_per_sm = kBlocksPerSm) {
  return int64_t(device_props()->multiProcessorCount) * blocks_per_sm;
}

// How a problem of rows of C contiguous channels (channels_last activations, a Linear layer's
// rows of features) is spread over the grid: threadIdx.x across packs of VEC channels, so a
// warp reads consecutive addresses; threadIdx.y across rows; blockIdx.x across channel tiles;
// blockIdx.y splits the rows into chunks, as many as one wave of blocks holds (a second,
// partial wave would double the time of a bandwidth-bound kernel) but each at least four rows
// per thread.
struct GridPlan {
  dim3 grid, block;
  int64_t chunk;  // rows (or, NCHW BatchNorm, elements) per split
  int splits;
};

inline GridPlan plan_rows(int64_t rows, int64_t C, int vec, int blocks_per_sm = kBlocksPerSm) {
  const int64_t cvecs = ceil_div(C, vec);
  const int tx = int(std::min<int64_t>(32, next_pow2(cvecs)));
  const int ty = kThreads / tx;
  const int64_t cblocks = ceil_div(cvecs, tx);
  const int64_t max_splits = std::max<int64_t>(1, rows / (int64_t(ty) * 4));
  const int64_t wanted = std::max<int64_t>(1, blocks_to_fill(blocks_per_sm) / cblocks);  // at most one wave
  const int64_t s = std::min<int64_t>({wanted, max_splits, 1024});
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

// Last-block reductions: every block writes its partial results (each writing thread then
// fences), and the last block to finish folds them, so a reduction and its finish are one
// launch and use no float atomics. Every thread of the block calls this; it returns true in
// the block that took the last of `blocks` tickets from *ticket (zero on entry), which also
// puts *ticket back to zero for the next launch. That block then reads the partials with
// __ldcg (from L2, never from a stale L1 line).
__device__ __forceinline__ bool last_block_to_finish(unsigned int* ticket, unsigned int blocks) {
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    last = atomicAdd(ticket, 1u) == blocks - 1;
    if (last) *ticket = 0;  // every other block has taken its ticket
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// In the last block of a tile of `channels` channels: folds each channel's `splits` partials
// (load(c, s) -> T, T a Welford or Sums) and calls finish(c, total) in one thread per channel.
// The whole block works: a group of warps per channel (all of them for one channel), splits
// strided over the group's lanes, four loads issued before their merges, then a shuffle tree
// and, across the group's warps, shared memory in warp order. The order depends on the shape
// alone, so the bits are the same from run to run. Every thread of the block calls it.
template <typename T, typename Load, typename Finish>
__device__ __forceinline__ void fold_splits(int channels, int splits, Load load, Finish finish) {
  constexpr int kUnroll = 4;
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  const int warps = int(blockDim.x * blockDim.y) / 32, warp = tid / 32, lane = tid % 32;
  int per = channels > 0 ? warps / channels : warps;  // warps per channel, a power of two
  per = per < 1 ? 1 : per;
  while (per & (per - 1)) per &= per - 1;
  const int groups = warps / per, group = warp / per, rank = (warp % per) * 32 + lane, width = per * 32;
  __shared__ double raw[(32 * sizeof(T) + sizeof(double) - 1) / sizeof(double)];  // T holds floats or doubles
  T* across = reinterpret_cast<T*>(raw);
  for (int base = 0; base < channels; base += groups) {  // the same trip count in every thread
    const int c = base + group;
    T acc{};
    if (c < channels) {
      for (int s0 = rank; s0 < splits; s0 += width * kUnroll) {
        T v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) v[u] = s0 + u * width < splits ? load(c, s0 + u * width) : T{};
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) acc.merge(v[u]);
      }
    }
    acc = warp_fold(acc);
    if (per > 1) {
      __syncthreads();  // the previous round's reads of `across` are done
      if (lane == 0) across[warp] = acc;
      __syncthreads();
      if (rank == 0)
        for (int w = 1; w < per; ++w) acc.merge(across[warp + w]);
    }
    if (rank == 0 && c < channels) finish(c, acc);
  }
}

// Zeroed int counters for last-block reductions on the current stream (elementwise.cu), at
// least `count` of them: each kernel that takes tickets from one leaves it at zero again.
at::Tensor reduction_tickets(const at::Tensor& like, int64_t count = 1);

}  // namespace cuda
}  // namespace fastgan
