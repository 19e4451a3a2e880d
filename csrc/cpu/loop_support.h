// What every CPU loop shares, compiled once per instruction set: for_each_isa.h includes it
// inside each instruction set's namespace, before the op's own loops. Fixed chunk sizes, so
// the work split (and every reduction's order) never depends on the thread count.
//
// No #pragma once: included once per instruction set, by design.

namespace {

// Runs short enough to stay in L1/L2, so the two-pass statistics inside one run cost one
// read from memory. Fixed, so chunking never depends on the thread count.
constexpr int64_t kRun = 4096;

// The loop lambdas capture the activation's slope by value: captured by reference, GCC's
// vectoriser gave up on the LeakyReLU loops (it cannot give a vector type to a float&) and
// ran them as scalar code with a branch per element, 5x slower on random data.

// Below this many elements per task, waking another thread costs more than it saves.
constexpr int64_t kMinTask = 32768;

inline int64_t grain(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinTask / std::max<int64_t>(1, elements_per_item));
}

// Elements per task of a plain elementwise loop.
constexpr int64_t kGrain = 32768;

// Storing float results into a bfloat16 tensor. Written per element
// (`y[i] = store<BFloat16>(f(i))`), GCC vectorises the conversion 16 values at a time and
// narrows both arms of its NaN select to 16 bits before selecting: ~50 instructions per 16
// values, 0.35 ms per million values on one AVX2 core, more than the BatchNorm arithmetic
// around it (fp32 output: 0.13 ms). So a loop writing a bfloat16 tensor computes a chunk of
// float results into a stack buffer (a float loop, which vectorises as such) and
// store_row converts the chunk with AVX2 integer instructions, 8 values per vector, with
// convert.h's rounding (to nearest even; NaN to 0x7FC0): ~27 instructions per 16 values,
// 0.22 ms per million. Other dtypes keep the direct loop (float and double store as they are;
// half's rounding is its own and stays as convert.h writes it).
constexpr int64_t kStoreChunk = 256;

#if FASTGAN_CPU_ISA_IS_AVX2
C10_ALWAYS_INLINE __m256i bf16_bits_of(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  return _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
}

// dst[0, n) = the bfloat16 of src[0, n), as store<BFloat16> rounds each.
C10_ALWAYS_INLINE void store_row(const float* src, c10::BFloat16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // packus interleaves the two 8-value halves per 128-bit lane; permute4x64 puts them in order.
    const __m256i packed =
        _mm256_packus_epi32(bf16_bits_of(_mm256_loadu_ps(src + i)), bf16_bits_of(_mm256_loadu_ps(src + i + 8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  for (; i < n; ++i) dst[i] = store<c10::BFloat16>(src[i]);
}
#endif

// dst[i] = value_at(i) converted to scalar_t, for i in [0, n). value_at(i) returns the
// accumulation type; it is called once per i, in a vectorised loop.
template <typename scalar_t, typename ValueAt>
C10_ALWAYS_INLINE void store_each(scalar_t* dst, int64_t n, ValueAt&& value_at) {
#if FASTGAN_CPU_ISA_IS_AVX2
  if constexpr (std::is_same<scalar_t, c10::BFloat16>::value) {
    alignas(64) float chunk[kStoreChunk];
    for (int64_t i0 = 0; i0 < n; i0 += kStoreChunk) {
      const int64_t w = std::min(kStoreChunk, n - i0);
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) chunk[j] = value_at(i0 + j);
      store_row(chunk, dst + i0, w);
    }
    return;
  }
#endif
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = store<scalar_t>(value_at(i));
}

// Loops live outside the AT_DISPATCH lambdas: a #pragma cannot sit inside a macro argument.
// The entry points (`*_entry`) take void pointers and switch on the dtype and the activation
// once per call, so the op code outside the per-instruction-set namespaces calls them without
// knowing the loops' templates.
#define FASTGAN_CPU_DISPATCH(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

}  // namespace
