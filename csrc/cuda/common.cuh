// Helpers shared by the CUDA kernels: block sizes, 16-byte packs, grid planners, block folds and
// the last-block reductions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

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

// VEC consecutive elements moved as one 16-byte (or smaller) access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// The emulation copies bytes: a misaligned access it has reported (FASTGAN_CHECK_ALIGNED) is
// not also undefined behaviour on the host, which its UBSan build would stop at first.
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p) {
  FASTGAN_CHECK_ALIGNED(p, sizeof(Pack<T, VEC>));
#ifdef FASTGAN_CUDA_EMU
  Pack<T, VEC> v;
  std::memcpy(static_cast<void*>(&v), p, sizeof(v));
  return v;
#else
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
#endif
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, VEC>& v) {
  FASTGAN_CHECK_ALIGNED(p, sizeof(Pack<T, VEC>));
#ifdef FASTGAN_CUDA_EMU
  std::memcpy(static_cast<void*>(p), &v, sizeof(v));
#else
  *reinterpret_cast<Pack<T, VEC>*>(p) = v;
#endif
}

// Elements per 16-byte access.
template <typename T>
constexpr int vec_width() {
  return 16 / sizeof(T) > 0 ? int(16 / sizeof(T)) : 1;
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// K running sums (the BatchNorm statistics' sum d and sum d^2 around a shift; the backward's sum
// g and sum g * (x - mean); a bias gradient; a loss).
template <typename A, int K>
struct Sums {
  A v[K] = {};
};

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

// Blocks for `items` items, one per thread, at most one wave: an elementwise kernel strides
// over the rest (grid-stride loop).
inline int grid_for(int64_t items) {
  return int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(items, kThreads), blocks_to_fill())));
}

// Loads each thread keeps in flight in the element loops (walk_unrolled), and the rows a
// thread should walk so that its block's reduction is a small part of its time.
constexpr int kLoadsInFlight = 4;
constexpr int kRowsPerThread = 16;

// How many splits (blocks along the rows) a problem of `rows` rows gets, with `per_block` rows
// per block-wide step and `tiles` blocks across the channels: kRowsPerThread rows per thread
// while that keeps at least half a wave of blocks (half of H100/H200's 528 blocks with four
// 16-byte loads in flight per thread is over 4 MB in flight, more than bandwidth times
// latency, about 3.4 MB); below that, as many splits as one wave holds (a second, partial wave
// would double a bandwidth-bound kernel's time), each at least kLoadsInFlight rows per thread.
inline int64_t row_splits(int64_t rows, int64_t per_block, int64_t tiles, int blocks_per_sm) {
  const int64_t wave = std::max<int64_t>(1, blocks_to_fill(blocks_per_sm) / tiles);
  const int64_t long_splits = rows / (per_block * kRowsPerThread);
  int64_t s =
      long_splits >= (wave + 1) / 2 ? std::min(long_splits, wave) : std::min(wave, rows / (per_block * kLoadsInFlight));
  return std::max<int64_t>(1, std::min<int64_t>(s, 1024));
}

// The finishing fold of a last-block reduction (fold_partials): each lane of the finishing block
// keeps kFinishLoadsOf<A> loads in flight (16 of 4-byte sums, 8 of 8-byte ones, to stay within
// the kernels' registers), and a fold takes at most kFinishRounds such rounds (one L2 round trip
// each) per warp. A tile it finishes has at most kFinishChannels channels, one per lane of a
// warp, so a tile's last block folds all of its channels at once, the block's warps taking the
// splits in turn; the reduction planners keep tiles that narrow and cap the splits
// (max_finish_splits), so the bound holds by construction (the emulation counts the rounds:
// FASTGAN_FINISH_ROUND, tests/test_cuda_emu.py).
template <typename A>
constexpr int kFinishLoadsOf = sizeof(A) >= 8 ? 8 : 16;
constexpr int kFinishRounds = 2;
constexpr int kFinishChannels = 32;

// The most splits a tile of `channels` channels can have for its finishing fold to take at most
// kFinishRounds rounds: kThreads / width lanes per channel, width = channels rounded up to a power
// of two (fold_partials).
template <typename A>
int64_t max_finish_splits(int64_t channels) {
  const int64_t width = next_pow2(std::min<int64_t>(std::max<int64_t>(channels, 1), kFinishChannels));
  return int64_t(kThreads) / width * kFinishLoadsOf<A> * kFinishRounds;
}

// How a problem of rows of C contiguous channels (channels_last activations, a Linear layer's
// rows of features) is spread over the grid: threadIdx.x across packs of VEC channels, so a
// warp reads consecutive addresses; threadIdx.y across rows; blockIdx.x across channel tiles;
// blockIdx.y splits the rows into chunks (row_splits).
struct GridPlan {
  dim3 grid, block;
  int64_t chunk;  // rows (or, NCHW BatchNorm, elements) per split
  int splits;
};

inline GridPlan plan_rows_of(int64_t rows, int64_t C, int vec, int blocks_per_sm, int64_t max_tile_channels,
                             int64_t max_splits) {
  const int64_t cvecs = ceil_div(C, vec);
  const int tx = int(std::min<int64_t>(std::max<int64_t>(1, max_tile_channels / vec), next_pow2(cvecs)));
  const int ty = kThreads / tx;
  const int64_t cblocks = ceil_div(cvecs, tx);
  int64_t s = row_splits(rows, ty, cblocks, blocks_per_sm);
  s = std::max<int64_t>(1, std::min(s, max_splits));
  GridPlan p;
  p.chunk = std::max<int64_t>(1, ceil_div(rows, s));
  p.splits = int(std::max<int64_t>(1, ceil_div(rows, p.chunk)));
  p.block = dim3(unsigned(tx), unsigned(ty));
  p.grid = dim3(unsigned(cblocks), unsigned(p.splits));
  return p;
}

// An elementwise pass over rows: tiles of up to 32 lanes x VEC channels (a warp reads up to 512
// contiguous bytes per row).
inline GridPlan plan_rows(int64_t rows, int64_t C, int vec, int blocks_per_sm = kBlocksPerSm) {
  return plan_rows_of(rows, C, vec, blocks_per_sm, int64_t(32) * vec, rows);
}

// A reduction over rows finished by each tile's last block: tiles of at most kFinishChannels
// channels, so that the C / 32 tiles' last blocks finish in parallel, each folding its channels at
// once, and splits capped so that the fold takes at most kFinishRounds rounds.
// A: the type of the partial sums.
template <typename A>
GridPlan plan_reduction_rows(int64_t rows, int64_t C, int vec, int blocks_per_sm = kBlocksPerSm) {
  return plan_rows_of(rows, C, vec, blocks_per_sm, std::max(kFinishChannels, vec),
                      max_finish_splits<A>(std::min<int64_t>(C, kFinishChannels)));
}

// A thread's walk over rows of C channels: rows index, first + step, ..., its elements at
// index * C + c0.
struct RowCursor {
  int64_t index, step, off, off_step;
  __device__ __forceinline__ RowCursor(int64_t first, int64_t step_, int64_t C, int64_t c0)
      : index(first), step(step_), off(first * C + c0), off_step(step_ * C) {}
  __device__ __forceinline__ int64_t offset() const { return off; }
  __device__ __forceinline__ void advance() {
    index += step;
    off += off_step;
  }
};

// Walks `at` (a cursor: index, step, offset(), advance()) while index < end, U positions at a
// time: the U loads are issued before any of their uses, so U requests per thread are in
// flight (one load per iteration waits a whole memory latency for each). load(offset) returns
// what use(offset, loaded) consumes.
//
// The bounds are written `end > at.index`, never `at.index < end`: in C++20 mode (torch 2.14
// passes -std=c++20) nvcc's front end reads `at.index <`, a member of an object of dependent
// type followed by `<`, as the start of a template argument list and stops.
template <int U, typename Cursor, typename Load, typename Use>
__device__ __forceinline__ void walk_unrolled(Cursor at, int64_t end, Load load, Use use) {
  using Loaded = decltype(load(int64_t(0)));
  for (; end > at.index + (U - 1) * at.step;) {
    int64_t off[U];
    Loaded v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      off[u] = at.offset();
      v[u] = load(off[u]);
      at.advance();
    }
#pragma unroll
    for (int u = 0; u < U; ++u) use(off[u], v[u]);
  }
  for (; end > at.index; at.advance()) {
    const int64_t off = at.offset();
    use(off, load(off));
  }
}

// Sums, over the rows of a block (threadIdx.y, and for tx = 1 the whole block), the K x VEC
// values each thread holds for its VEC columns, in a fixed order, then calls
// out(x, k, totals[K]) once for every column (x < tx, k < VEC), spread over the block's
// threads. Within a warp the rows (32 / tx of them) are added by shuffles; across the warps
// through shared memory laid out [warp][K][VEC][tx], so each warp's stores and loads touch
// consecutive words (one wavefront per 32 words: no bank conflicts), and there is one barrier.
// Additions only: callers keep sums (around a shift every block of the channel shares).
// tx: a power of two <= 32 dividing the block. Every thread of the block calls it.
template <int K, int VEC, typename A, typename Out>
__device__ __forceinline__ void fold_rows(A (&v)[K][VEC], int tx, Out out) {
  constexpr int kWarps = kThreads / 32;
  constexpr int kMaxValues = K * VEC * 32;  // per warp, at tx = 32
  FASTGAN_SHARED(A, sh, kWarps * kMaxValues);
  const int threads = int(blockDim.x * blockDim.y), tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  const int lane = tid % 32, warp = tid / 32, per_warp = K * VEC * tx;
  for (int off = 16; off >= tx; off /= 2) {
#pragma unroll
    for (int q = 0; q < K; ++q)
#pragma unroll
      for (int k = 0; k < VEC; ++k) v[q][k] += __shfl_down_sync(0xffffffffu, v[q][k], off);
  }
  if (lane < tx) {
#pragma unroll
    for (int q = 0; q < K; ++q)
#pragma unroll
      for (int k = 0; k < VEC; ++k) sh[warp * per_warp + (q * VEC + k) * tx + lane] = v[q][k];
  }
  __syncthreads();
  for (int col = tid; col < VEC * tx; col += threads) {  // col = k * tx + x
    A total[K];
#pragma unroll
    for (int q = 0; q < K; ++q) {
      total[q] = sh[q * VEC * tx + col];
      for (int w = 1; w < threads / 32; ++w) total[q] += sh[w * per_warp + q * VEC * tx + col];
    }
    out(col % tx, col / tx, total);
  }
}

// Last-block reductions: every block writes its partial results, and the last block to finish
// folds them, so a reduction and its finish are one launch and use no float atomics. Every
// thread of the block calls this; it returns true in the block that took the last of `blocks`
// tickets from *ticket (zero on entry), which also puts *ticket back to zero for the next
// launch.
//
// Why one atomic by one thread is enough (the PTX memory model): each thread's plain stores of
// its partials precede, in its program order, the barrier below; bar.sync synchronises the
// block, so they precede thread 0's ticket in causality order; the ticket is a device-scope
// acquire-release read-modify-write, and a release is cumulative: it publishes every write
// that precedes it in causality order, not only thread 0's own. The block that takes the last
// ticket acquires from every earlier ticket (they form one release sequence on *ticket), and its
// second barrier extends that to all of its threads, which then read the partials with __ldcg
// (from L2, where the writers' stores are; never from an L1 line of this SM). So there is no
// fence per thread on either side.
__device__ __forceinline__ bool last_block_to_finish(unsigned int* ticket, unsigned int blocks) {
  FASTGAN_SHARED(bool, last, 1);
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    ::cuda::atomic_ref<unsigned int, ::cuda::thread_scope_device> counter(*ticket);
    const bool mine = counter.fetch_add(1u, ::cuda::memory_order_acq_rel) == blocks - 1;
    if (mine) counter.store(0u, ::cuda::memory_order_relaxed);  // every other block has taken its ticket
    last[0] = mine;
  }
  __syncthreads();
  return last[0];
}

// In the last block of a tile of `channels` (<= kFinishChannels) channels: adds each channel's
// `splits` partials, K values each (load(c, s) -> Sums<A, K>), and calls finish(c, totals) for
// every channel c in thread c of the block (threadIdx.y * blockDim.x + threadIdx.x == c), so
// what a thread loaded for channel c before the fold (weight, bias, running statistics: issue
// those loads first, so they overlap the fold) is at hand in finish. Lanes run across the
// channels (width = channels rounded up to a power of two) and the kThreads / width lane groups
// across the splits, each lane issuing kFinishLoadsOf<A> loads before adding them: a round is one L2
// round trip, and the planners keep the rounds <= kFinishRounds. The lanes' sums are then added
// by fold_rows. The order depends on the shape alone, so the bits are the same from run to
// run. Every thread of the block calls it.
template <int K, typename A, typename Load, typename Finish>
__device__ __forceinline__ void fold_partials(int channels, int splits, Load load, Finish finish) {
  int width = 1;
  while (width < channels) width *= 2;
  const int threads = int(blockDim.x * blockDim.y), tid = int(threadIdx.y * blockDim.x + threadIdx.x);
  const int c = tid % width, stride = threads / width;
  constexpr int U = kFinishLoadsOf<A>;
  A acc[K][1];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k][0] = A(0);
  if (c < channels) {
    for (int s = tid / width; s < splits; s += stride * U) {
      FASTGAN_FINISH_ROUND();
      Sums<A, K> v[U];
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (s + u * stride < splits) v[u] = load(c, s + u * stride);
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int k = 0; k < K; ++k) acc[k][0] += v[u].v[k];
    }
  }
  fold_rows<K, 1>(acc, width, [&](int x, int, const A(&t)[K]) {
    if (x < channels) finish(x, t);
  });
}

// Zeroed int counters for last-block reductions on the current stream (reduction_tickets.cu), at
// least `count` of them: each kernel that takes tickets from one leaves it at zero again.
at::Tensor reduction_tickets(const at::Tensor& like, int64_t count = 1);

}  // namespace cuda
}  // namespace fastgan
