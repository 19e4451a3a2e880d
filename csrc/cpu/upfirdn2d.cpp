// The CPU op of upfirdn2d: upsample by zero insertion, pad (or crop), correlate with a FIR
// filter, downsample, in one pass that touches only the taps that meet a sample (fir_taps.h).
// Its gradient is upfirdn2d again (autograd_stylegan.cpp), so this one op serves forward,
// backward and every higher order. The op comes first; its loops follow, compiled once per
// instruction set (for_each_isa.h).
#ifndef FASTGAN_CPU_ISA  // the op, compiled once
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "../fastgan.h"
#include "../args/upfirdn2d.h"
#include "isa.h"

namespace fastgan {
// Which part of the sum a loop call computes (upfirdn2d_entry).
enum class Stage { Whole, Rows, Columns };
}  // namespace fastgan

#define FASTGAN_CPU_LOOPS "upfirdn2d.cpp"
#include "for_each_isa.h"

namespace fastgan {
namespace {

// The correlation kernel F[ky][kx] the loops read, times the gain: the filter flipped on both
// axes unless flip_filter (a convolution), a separable filter expanded to its outer product.
// At most a few hundred taps, built per call.
template <typename acc_t>
std::vector<acc_t> correlation_taps(const at::Tensor& filter, const Upfirdn2dGeometry& g, bool flip_filter,
                                    double gain) {
  const acc_t* f = filter.const_data_ptr<acc_t>();
  std::vector<acc_t> taps(size_t(g.fh * g.fw));
  for (int64_t ky = 0; ky < g.fh; ++ky) {
    for (int64_t kx = 0; kx < g.fw; ++kx) {
      const int64_t sy = filter_index(ky, g.fh, flip_filter), sx = filter_index(kx, g.fw, flip_filter);
      const acc_t v = g.separable ? f[sy] * f[sx] : f[sy * g.fw + sx];
      taps[size_t(ky * g.fw + kx)] = v * acc_t(gain);
    }
  }
  return taps;
}

// A separable filter of n taps is the outer product of its taps with themselves: n^2 taps
// summed directly, 2n as a pass along rows then a pass along columns (StyleGAN3's 12-tap
// filters: 24 multiply-adds per output instead of 144). The row pass writes the accumulation
// dtype (float for 16-bit input), so the result is rounded once, as the direct sum's.
template <typename acc_t>
void separable_passes(const Upfirdn2dTensors& t, bool flip_filter, double gain) {
  const Upfirdn2dGeometry& g = t.g;
  const acc_t* f = t.filter.const_data_ptr<acc_t>();
  std::vector<acc_t> row_taps(size_t(g.fw)), column_taps(size_t(g.fw));
  for (int64_t k = 0; k < g.fw; ++k) {
    const acc_t v = f[filter_index(k, g.fw, flip_filter)];
    row_taps[size_t(k)] = v;
    column_taps[size_t(k)] = v * acc_t(gain);
  }
  Upfirdn2dGeometry rows = g, columns = g;
  rows.separable = columns.separable = false;
  rows.fh = 1, rows.up_y = rows.down_y = 1, rows.pad_y0 = rows.pad_y1 = 0, rows.out_h = g.H;
  columns.fw = 1, columns.up_x = columns.down_x = 1, columns.pad_x0 = columns.pad_x1 = 0, columns.W = g.out_w;
  const at::Tensor between = at::empty({g.N, g.C, g.H, g.out_w}, t.input.options().dtype(t.filter.scalar_type()),
                                       t.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const at::ScalarType dt = t.input.scalar_type();
  FASTGAN_CPU_LOOP(upfirdn2d_entry)(dt, Stage::Rows, t.input.const_data_ptr(), row_taps.data(), between.data_ptr(),
                                    rows, t.channels_last);
  FASTGAN_CPU_LOOP(upfirdn2d_entry)(dt, Stage::Columns, between.const_data_ptr(), column_taps.data(), t.out.data_ptr(),
                                    columns, t.channels_last);
}

template <typename acc_t>
void direct(const Upfirdn2dTensors& t, bool flip_filter, double gain) {
  const std::vector<acc_t> taps = correlation_taps<acc_t>(t.filter, t.g, flip_filter, gain);
  FASTGAN_CPU_LOOP(upfirdn2d_entry)(t.input.scalar_type(), Stage::Whole, t.input.const_data_ptr(), taps.data(),
                                    t.out.data_ptr(), t.g, t.channels_last);
}

at::Tensor upfirdn2d_cpu(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef up, at::IntArrayRef down,
                         at::IntArrayRef padding, bool flip_filter, double gain) {
  const Upfirdn2dTensors t = upfirdn2d_tensors(input, filter, up, down, padding);
  if (t.out.numel() == 0) return t.out;
  const bool dbl = t.input.scalar_type() == at::kDouble;
  if (t.g.separable && t.g.fw > 1) {
    if (dbl)
      separable_passes<double>(t, flip_filter, gain);
    else
      separable_passes<float>(t, flip_filter, gain);
  } else {
    if (dbl)
      direct<double>(t, flip_filter, gain);
    else
      direct<float>(t, flip_filter, gain);
  }
  return t.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("upfirdn2d", &upfirdn2d_cpu); }

}  // namespace fastgan

#else  // FASTGAN_CPU_ISA: the loops, compiled once per instruction set (for_each_isa.h)

namespace {

// One axis's runs for every output coordinate (fir_taps.h).
inline std::vector<TapRun<int64_t>> runs_of(int64_t out, int64_t up, int64_t down, int64_t pad0, int64_t taps,
                                            int64_t in) {
  std::vector<TapRun<int64_t>> runs(size_t(out > 0 ? out : 0));
  for (int64_t o = 0; o < out; ++o) runs[size_t(o)] = tap_run<int64_t>(o, up, down, pad0, taps, in);
  return runs;
}

// NCHW: the outputs of one row that a column tap kx reaches form an arithmetic progression,
// ox = o + m * so against the inputs ix = i + m * si (so = up / gcd(up, down), si = down /
// gcd), so each (row tap, column tap) pair is one loop along the row that the compiler
// vectorises. The row is summed in so phases, each contiguous (outputs o, o + so, ... side by
// side), and interleaved once when stored: the loops then write contiguously, and read
// contiguously (si = 1) or every other input (si = 2, the usual down = 2).
struct ColumnRun {
  int64_t kx, o, i, count;
};

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

inline std::vector<ColumnRun> column_runs(const Upfirdn2dGeometry& g, int64_t so, int64_t si) {
  std::vector<ColumnRun> runs;
  for (int64_t kx = 0; kx < g.fw; ++kx) {
    // The first ox in [0, so) whose upsampled coordinate ox * down + kx - pad0 is a multiple of up.
    int64_t ox0 = -1;
    for (int64_t ox = 0; ox < std::min(so, g.out_w) && ox0 < 0; ++ox)
      if ((((ox * g.down_x + kx - g.pad_x0) % g.up_x) + g.up_x) % g.up_x == 0) ox0 = ox;
    if (ox0 < 0 || ox0 >= g.out_w) continue;
    const int64_t ix0 = (ox0 * g.down_x + kx - g.pad_x0) / g.up_x;  // exact
    const int64_t m_lo = ix0 >= 0 ? 0 : (-ix0 + si - 1) / si;
    const int64_t m_by_out = (g.out_w - ox0 + so - 1) / so;
    const int64_t m_by_in = ix0 <= g.W - 1 ? floor_div(g.W - 1 - ix0, si) + 1 : 0;
    const int64_t m_hi = std::min(m_by_out, m_by_in);
    if (m_hi > m_lo) runs.push_back({kx, ox0 + m_lo * so, ix0 + m_lo * si, m_hi - m_lo});
  }
  return runs;
}

template <int SI, typename in_t, typename acc_t>
C10_ALWAYS_INLINE void accumulate_run(acc_t* __restrict__ acc, const in_t* __restrict__ row, acc_t w, int64_t count,
                                      int64_t si) {
  const int64_t i_step = SI > 0 ? SI : si;
#pragma omp simd
  for (int64_t m = 0; m < count; ++m) acc[m] += w * load(row[m * i_step]);
}

template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nchw(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g) {
  const int64_t gcd = std::gcd(g.up_x, g.down_x), so = g.up_x / gcd, si = g.down_x / gcd;
  const int64_t phase_len = (g.out_w + so - 1) / so;  // outputs per phase (the last phases may hold fewer)
  const int64_t phases = std::min(so, g.out_w);       // so > out_w: one output per phase, the rest unused
  const std::vector<TapRun<int64_t>> rows = runs_of(g.out_h, g.up_y, g.down_y, g.pad_y0, g.fh, g.H);
  const std::vector<ColumnRun> columns = column_runs(g, so, si);
  const int64_t planes = g.N * g.C, work_per_row = g.out_w * std::max<int64_t>(1, int64_t(columns.size()));
  at::parallel_for(0, planes * g.out_h, grain(work_per_row), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> acc(size_t(phases * phase_len));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t plane = r / g.out_h, oy = r % g.out_h;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const TapRun<int64_t> ry = rows[size_t(oy)];
      for (int64_t a = 0; a < ry.n; ++a) {
        const in_t* row = x + (plane * g.H + ry.i0 + a) * g.W;
        const acc_t* tap_row = taps + (ry.k0 + a * g.up_y) * g.fw;
        for (const ColumnRun& c : columns) {
          acc_t* out = acc.data() + (c.o % so) * phase_len + c.o / so;
          const in_t* in = row + c.i;
          const acc_t w = tap_row[c.kx];
          if (si == 1)
            accumulate_run<1>(out, in, w, c.count, si);
          else if (si == 2)
            accumulate_run<2>(out, in, w, c.count, si);
          else
            accumulate_run<0>(out, in, w, c.count, si);
        }
      }
      out_t* yr = y + r * g.out_w;
      for (int64_t p = 0; p < phases; ++p) {
        const acc_t* phase = acc.data() + p * phase_len;
        const int64_t n = (g.out_w - p + so - 1) / so;
#pragma omp simd
        for (int64_t m = 0; m < n; ++m) yr[p + m * so] = store<out_t>(phase[m]);
      }
    }
  });
}

// NCHW planes small enough to sit in the core's cache (StyleGAN's blur, upsample2d and
// downsample2d at 4-64 px, and their gradients): the row loop above runs up to fh x fw loops of
// out_w elements per output row, and at 16-32 px their start-up and remainders cost more than
// the sums. Here a plane is first copied, zero-padded, into a scratch plane laid out so that
// every tap becomes one contiguous loop over the whole plane (j = row * pitch + column; the
// columns past a row's end are computed and dropped):
// - without upsampling, into down_y x down_x input phases, phase (ry, rx) holding
//   P[down_y * y + ry][down_x * x + rx] of the padded plane P: output (oy, ox) reads phase
//   (ky % down_y, kx % down_x) at (oy + ky / down_y, ox + kx / down_x);
// - without downsampling, the output is split instead into up_y x up_x phases, each summing only
//   the taps that meet a sample: output (up_y * qy + py, ...) reads the padded input at
//   (qy + e, ...), e = (py + ky - pad_y0) / up_y, for the taps ky where that is exact.
// Up and down together (and cropping) stay on the row loop. kPlaneElements bounds the scratch of
// one plane: 256 KB of float, within a core's L2 cache, which holds StyleGAN2's planes up to
// 128 x 128 in and 256 x 256 out (at 16 Ki elements, 128 px planes fell to the row loop: the
// blur at 8 x 256 x 128 x 128 was 1.09x the reference forward+backward). Small planes are
// batched up to kBatchElements (64 KB), the scratch the batching was measured with.
constexpr int64_t kPlaneElements = 64 * 1024;
constexpr int64_t kBatchElements = 16 * 1024;

// One tap of a plane loop: where it reads in the scratch (j = 0's element), and its weight.
template <typename acc_t>
struct PlaneTap {
  int64_t offset;
  acc_t w;
};

// sums[j] = sum over taps t, in order, of w_t * scratch[offset_t + j], j < n. A block of four
// 256-bit vectors of j stays in registers across the taps: one load and one multiply-add per tap
// and vector, where a pass per tap also loads and stores the sums (GCC keeps a local array in
// memory across the tap loop, so the block is four vector variables: GCC's and Clang's vector
// extension; other compilers take the pass per tap).
template <typename acc_t>
void sum_taps(acc_t* __restrict__ sums, const acc_t* __restrict__ scratch, const PlaneTap<acc_t>* taps_begin,
              const PlaneTap<acc_t>* taps_end, int64_t n) {
  const struct {
    const PlaneTap<acc_t>*b, *e;
    const PlaneTap<acc_t>* begin() const { return b; }
    const PlaneTap<acc_t>* end() const { return e; }
  } taps{taps_begin, taps_end};
  int64_t j0 = 0;
#if defined(__GNUC__) || defined(__clang__)
  // (The attribute is not applied to a dependent type, hence the two named ones.)
  typedef float float_vec __attribute__((vector_size(32)));
  typedef double double_vec __attribute__((vector_size(32)));
  using vec = std::conditional_t<std::is_same_v<acc_t, float>, float_vec, double_vec>;
  static_assert(sizeof(vec) == 32 && std::is_same_v<acc_t, std::conditional_t<sizeof(acc_t) == 4, float, double>>);
  constexpr int64_t kLanes = 32 / int64_t(sizeof(acc_t)), kBlock = 4 * kLanes;
  const auto load_vec = [](const acc_t* p) {
    vec v;
    std::memcpy(&v, p, sizeof(vec));
    return v;
  };
  for (; j0 + kBlock <= n; j0 += kBlock) {
    vec s0 = {}, s1 = {}, s2 = {}, s3 = {};
    for (const PlaneTap<acc_t>& t : taps) {
      const acc_t* in = scratch + t.offset + j0;
      s0 += t.w * load_vec(in);
      s1 += t.w * load_vec(in + kLanes);
      s2 += t.w * load_vec(in + 2 * kLanes);
      s3 += t.w * load_vec(in + 3 * kLanes);
    }
    std::memcpy(sums + j0, &s0, sizeof(vec));
    std::memcpy(sums + j0 + kLanes, &s1, sizeof(vec));
    std::memcpy(sums + j0 + 2 * kLanes, &s2, sizeof(vec));
    std::memcpy(sums + j0 + 3 * kLanes, &s3, sizeof(vec));
  }
#endif
  std::fill(sums + j0, sums + n, acc_t(0));
  for (const PlaneTap<acc_t>& t : taps) {
    const acc_t* __restrict__ in = scratch + t.offset;
#pragma omp simd
    for (int64_t j = j0; j < n; ++j) sums[j] += t.w * in[j];
  }
}

template <typename acc_t>
void sum_taps(acc_t* __restrict__ sums, const acc_t* __restrict__ scratch, const std::vector<PlaneTap<acc_t>>& taps,
              int64_t n) {
  sum_taps(sums, scratch, taps.data(), taps.data() + taps.size(), n);
}

// Without upsampling: the input phases' rows, row pitch and elements (one spare row included).
struct DownPlanes {
  int64_t hd, wd, length;
  explicit DownPlanes(const Upfirdn2dGeometry& g)
      : hd(g.out_h + (g.fh - 1) / g.down_y), wd(g.out_w + (g.fw - 1) / g.down_x), length((hd + 1) * wd) {}
  // The phases, the sums, and a rank-one filter's row-pass results (one plane per y phase).
  int64_t elements(const Upfirdn2dGeometry& g) const {
    return g.down_y * g.down_x * length + g.out_h * wd + g.down_y * length;
  }
};

// Whether the correlation kernel F (fh x fw) is an outer product column[ky] * row[kx] to within
// rounding: StyleGAN's blur and resampling filters are (setup_filter expands a filter of under 8
// taps to its outer product). Summed as a row pass then a column pass, fh + fw multiply-adds per
// output replace fh * fw; the result differs from the direct sum by rounding only.
template <typename acc_t>
bool rank_one_factors(const acc_t* taps, int64_t fh, int64_t fw, std::vector<acc_t>& column, std::vector<acc_t>& row) {
  if (fh < 2 || fw < 2) return false;
  int64_t pr = 0, pc = 0;
  for (int64_t i = 0; i < fh * fw; ++i)
    if (std::abs(taps[i]) > std::abs(taps[pr * fw + pc])) pr = i / fw, pc = i % fw;
  const acc_t pivot = taps[pr * fw + pc];
  if (!(pivot != acc_t(0)) || !std::isfinite(pivot)) return false;
  column.resize(size_t(fh)), row.resize(size_t(fw));
  for (int64_t ky = 0; ky < fh; ++ky) column[size_t(ky)] = taps[ky * fw + pc];
  for (int64_t kx = 0; kx < fw; ++kx) row[size_t(kx)] = taps[pr * fw + kx] / pivot;
  const acc_t bound = acc_t(4) * std::numeric_limits<acc_t>::epsilon() * std::abs(pivot);
  for (int64_t ky = 0; ky < fh; ++ky)
    for (int64_t kx = 0; kx < fw; ++kx)
      if (!(std::abs(column[size_t(ky)] * row[size_t(kx)] - taps[ky * fw + kx]) <= bound)) return false;
  return true;
}

// Without downsampling, per axis: the output phases' length q, the padded input's offset a
// (input index + a) and its extent past q, span (the largest e + a).
struct UpAxis {
  int64_t q, a, span;
  UpAxis(int64_t out, int64_t up, int64_t pad0, int64_t taps)
      : q((out + up - 1) / up), a((pad0 + up - 1) / up), span(floor_div(up - 1 + taps - 1 - pad0, up) + a) {}
};
struct UpPlanes {
  UpAxis y, x;
  int64_t pitch, length;  // the padded input's row pitch, and its elements (one spare row included)
  explicit UpPlanes(const Upfirdn2dGeometry& g)
      : y(g.out_h, g.up_y, g.pad_y0, g.fh),
        x(g.out_w, g.up_x, g.pad_x0, g.fw),
        pitch(x.q + x.span),
        length((y.q + y.span + 1) * pitch) {}
  // The padded input, then the sums of each x phase of one y phase.
  int64_t elements(const Upfirdn2dGeometry& g) const { return length + g.up_x * y.q * pitch; }
};

// The input columns that x phase rx of DownPlanes holds, ix = ix0 + dx * k for k < count, at
// phase column xx0 + k: the padded column ix + pad_x0 is rx modulo dx. Columns past the phase
// row's wd (they meet no output) are left out.
struct DownColumns {
  int64_t ix0 = 0, xx0 = 0, count = 0;
  DownColumns() = default;
  DownColumns(const Upfirdn2dGeometry& g, const DownPlanes& pp, int64_t rx) {
    ix0 = ((rx - g.pad_x0) % g.down_x + g.down_x) % g.down_x;
    xx0 = (ix0 + g.pad_x0) / g.down_x;
    if (ix0 < g.W) count = std::max<int64_t>(0, std::min((g.W - 1 - ix0) / g.down_x + 1, pp.wd - xx0));
  }
};

// dst[k] = src[step * k], k < n: with the step a constant (2, downsampling's) the compiler loads
// whole vectors and shuffles them, where a run-time step loads one element at a time.
template <int64_t kStep, typename in_t, typename acc_t>
C10_ALWAYS_INLINE void deal_columns_by(acc_t* __restrict__ dst, const in_t* __restrict__ src, int64_t n,
                                       int64_t run_time_step) {
  const int64_t step = kStep > 0 ? kStep : run_time_step;
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) dst[k] = load(src[step * k]);
}

template <typename in_t, typename acc_t>
C10_ALWAYS_INLINE void deal_columns(acc_t* __restrict__ dst, const in_t* __restrict__ src, int64_t n, int64_t step) {
  if (step == 2)
    deal_columns_by<2>(dst, src, n, step);
  else if (step == 1)
    deal_columns_by<1>(dst, src, n, step);
  else
    deal_columns_by<0>(dst, src, n, step);
}

// Without upsampling, output rows [oy0, oy1) of a plane read the input rows [iy0, iy0 + H) of
// the band's geometry: the same sum over fewer rows, its padding what the band meets of it.
inline Upfirdn2dGeometry down_band(const Upfirdn2dGeometry& g, int64_t oy0, int64_t oy1, int64_t& iy0) {
  Upfirdn2dGeometry b = g;
  const int64_t first = oy0 * g.down_y - g.pad_y0;  // the input row of the band's first padded row
  iy0 = std::min(g.H, std::max<int64_t>(0, first));
  b.H = std::max<int64_t>(0, std::min(g.H, (oy1 - 1) * g.down_y + g.fh - g.pad_y0) - iy0);
  b.pad_y0 = iy0 - first;
  b.out_h = oy1 - oy0;
  b.pad_y1 = (b.out_h - 1) * g.down_y + g.fh - b.pad_y0 - b.H;
  return b;
}

// The most output rows per band whose scratch fits (DownPlanes depends on out_h, not on H), 0
// when not even one row's does.
inline int64_t down_band_rows(const Upfirdn2dGeometry& g) {
  int64_t lo = 0, hi = g.out_h;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    Upfirdn2dGeometry b = g;
    b.out_h = mid;
    if (DownPlanes(b).elements(b) <= kPlaneElements)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

inline bool plane_loop_fits(const Upfirdn2dGeometry& g) {
  if (g.pad_x0 < 0 || g.pad_x1 < 0 || g.pad_y0 < 0 || g.pad_y1 < 0) return false;
  if (g.up_x == 1 && g.up_y == 1) return down_band_rows(g) > 0;
  if (g.down_x == 1 && g.down_y == 1) return UpPlanes(g).elements(g) <= kPlaneElements;
  return false;
}

// in_plane, out_plane: the elements from one plane to the next (a band's planes are rows of
// larger ones).
template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nchw_down_planes(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g,
                                int64_t in_plane, int64_t out_plane) {
  const DownPlanes pp(g);
  const int64_t dy = g.down_y, dx = g.down_x, sums = g.out_h * pp.wd;
  // Several planes share the scratch, each `length` apart in every phase, sums and row-pass block:
  // one tap loop then runs over all of them, so small planes (StyleGAN's 4-16 px, whose tap loops
  // are a few vectors long) pay its start-up and remainder once per batch. The sums between two
  // planes are computed and dropped.
  const int64_t batch = std::max<int64_t>(1, kBatchElements / ((dy * dx + 1 + dy) * pp.length));
  const int64_t block = batch * pp.length;
  // Output (oy, ox) reads phase (ky % dy, kx % dx) at (oy + ky / dy, ox + kx / dx). A rank-one
  // filter goes in two passes: per y phase ry, rows[ry][yy][ox] sums the row taps over the x
  // phases, then the sums read rows[ky % dy] at (oy + ky / dy, ox).
  std::vector<PlaneTap<acc_t>> plane_taps, column_taps;
  std::vector<std::vector<PlaneTap<acc_t>>> row_taps;
  std::vector<acc_t> column, row;
  const bool two_passes = rank_one_factors(taps, g.fh, g.fw, column, row);
  if (two_passes) {
    row_taps.resize(size_t(dy));
    for (int64_t ry = 0; ry < dy; ++ry)
      for (int64_t kx = 0; kx < g.fw; ++kx)
        row_taps[size_t(ry)].push_back({(ry * dx + kx % dx) * block + kx / dx, row[size_t(kx)]});
    for (int64_t ky = 0; ky < g.fh; ++ky)
      column_taps.push_back({(ky % dy) * block + (ky / dy) * pp.wd, column[size_t(ky)]});
  } else {
    for (int64_t ky = 0; ky < g.fh; ++ky)
      for (int64_t kx = 0; kx < g.fw; ++kx)
        plane_taps.push_back({((ky % dy) * dx + kx % dx) * block + (ky / dy) * pp.wd + kx / dx, taps[ky * g.fw + kx]});
  }
  // The phases' padding is the same zeros for every plane: written once, when the scratch is
  // made, and each plane then writes only its samples, one input row at a time into the row of
  // each x phase (on 8-16 px planes a gather per phase row, with its bounds and zero fills,
  // cost more than the sums: 40 of them per 16 x 16 plane, against 16 rows).
  std::vector<DownColumns> columns_in(static_cast<size_t>(dx));
  for (int64_t rx = 0; rx < dx; ++rx) columns_in[size_t(rx)] = DownColumns(g, pp, rx);
  // Input rows whose padded row lands in the phases' hd + 1 rows (the rest meet no output).
  const struct {
    int64_t lo, hi;
  } rows_in{0, std::min(g.H, (pp.hd + 1) * dy - g.pad_y0)};
  at::parallel_for(0, g.N * g.C, grain(sums * (two_passes ? g.fh + g.fw : g.fh * g.fw)), [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> storage(size_t((dy * dx + 1 + dy) * block));  // zeros
    acc_t* __restrict__ acc = storage.data() + dy * dx * block;
    acc_t* __restrict__ rows = acc + block;
    for (int64_t first = p0; first < p1; first += batch) {
      const int64_t planes = std::min(batch, p1 - first);
      for (int64_t b = 0; b < planes; ++b) {
        const in_t* xp = x + (first + b) * in_plane;
        for (int64_t iy = rows_in.lo; iy < rows_in.hi; ++iy) {
          const int64_t py = iy + g.pad_y0;
          acc_t* row = storage.data() + (py % dy) * dx * block + b * pp.length + (py / dy) * pp.wd;
          for (int64_t rx = 0; rx < dx; ++rx) {
            const DownColumns& c = columns_in[size_t(rx)];
            deal_columns(row + rx * block + c.xx0, xp + iy * g.W + c.ix0, c.count, dx);
          }
        }
      }
      const int64_t before_last = (planes - 1) * pp.length;
      if (two_passes) {
        for (int64_t ry = 0; ry < dy; ++ry)
          sum_taps(rows + ry * block, storage.data(), row_taps[size_t(ry)], before_last + pp.hd * pp.wd);
        sum_taps(acc, rows, column_taps, before_last + sums);
      } else {
        sum_taps(acc, storage.data(), plane_taps, before_last + sums);
      }
      for (int64_t b = 0; b < planes; ++b) {
        out_t* yp = y + (first + b) * out_plane;
        const acc_t* ap = acc + b * pp.length;
        for (int64_t oy = 0; oy < g.out_h; ++oy) {
#pragma omp simd
          for (int64_t ox = 0; ox < g.out_w; ++ox) yp[oy * g.out_w + ox] = store<out_t>(ap[oy * pp.wd + ox]);
        }
      }
    }
  });
}

// Planes whose scratch would not fit (a blur of 256 x 256 planes) go in bands of output rows.
template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nchw_down_bands(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g) {
  const int64_t rows = down_band_rows(g);
  for (int64_t oy0 = 0; oy0 < g.out_h; oy0 += rows) {
    int64_t iy0 = 0;
    const Upfirdn2dGeometry b = down_band(g, oy0, std::min(g.out_h, oy0 + rows), iy0);
    upfirdn2d_nchw_down_planes(x + iy0 * g.W, taps, y + oy0 * g.out_w, b, g.H * g.W, g.out_h * g.out_w);
  }
}

// out[0..w) = even[0], odd[0], even[1], odd[1], ...: an output row of two x phases (up_x = 2,
// StyleGAN's). In one loop the compiler stores whole vectors after a shuffle, where a pass per
// phase stores one element at a time (profiled: the strided stores cost twice the taps' sums).
template <typename out_t, typename acc_t>
C10_ALWAYS_INLINE void store_interleaved(out_t* __restrict__ out, const acc_t* __restrict__ even,
                                         const acc_t* __restrict__ odd, int64_t w) {
  const int64_t pairs = w / 2;
#pragma omp simd
  for (int64_t q = 0; q < pairs; ++q) {
    out[2 * q] = store<out_t>(even[q]);
    out[2 * q + 1] = store<out_t>(odd[q]);
  }
  if (w % 2) out[w - 1] = store<out_t>(even[pairs]);
}

template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nchw_up_planes(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g) {
  const UpPlanes pp(g);
  const int64_t uy = g.up_y, ux = g.up_x, sums = pp.y.q * pp.pitch;
  // Per output phase, the taps that meet a sample: ky = (pad_y0 - py) mod up_y, + up_y, ...
  std::vector<std::vector<PlaneTap<acc_t>>> phase_taps(size_t(uy * ux));
  for (int64_t py = 0; py < uy; ++py) {
    for (int64_t px = 0; px < ux; ++px) {
      for (int64_t ky = ((g.pad_y0 - py) % uy + uy) % uy; ky < g.fh; ky += uy) {
        const int64_t ey = (py + ky - g.pad_y0) / uy + pp.y.a;  // exact
        for (int64_t kx = ((g.pad_x0 - px) % ux + ux) % ux; kx < g.fw; kx += ux) {
          const int64_t ex = (px + kx - g.pad_x0) / ux + pp.x.a;
          phase_taps[size_t(py * ux + px)].push_back({ey * pp.pitch + ex, taps[ky * g.fw + kx]});
        }
      }
    }
  }
  // The padded input's zeros are written once, when the scratch is made; each plane writes only
  // its samples (the rows and columns that fit the padded plane: the rest meet no output).
  const int64_t rows_in = std::min(g.H, pp.length / pp.pitch - pp.y.a);
  const int64_t columns_in = std::min(g.W, pp.pitch - pp.x.a);
  at::parallel_for(0, g.N * g.C, grain(g.out_h * g.out_w * std::max<int64_t>(1, g.fh * g.fw / (uy * ux))),
                   [&](int64_t p0, int64_t p1) {
                     std::vector<acc_t> storage(size_t(pp.elements(g)));  // zeros: the padding
                     acc_t* __restrict__ padded = storage.data();
                     acc_t* __restrict__ acc = storage.data() + pp.length;
                     for (int64_t plane = p0; plane < p1; ++plane) {
                       const in_t* xp = x + plane * g.H * g.W;
                       for (int64_t iy = 0; iy < rows_in; ++iy)
                         deal_columns(padded + (iy + pp.y.a) * pp.pitch + pp.x.a, xp + iy * g.W, columns_in, 1);
                       out_t* yp = y + plane * g.out_h * g.out_w;
                       const int64_t x_phases = std::min(ux, g.out_w);
                       for (int64_t py = 0; py < std::min(uy, g.out_h); ++py) {
                         for (int64_t px = 0; px < x_phases; ++px)
                           sum_taps(acc + px * sums, padded, phase_taps[size_t(py * ux + px)], sums);
                         const int64_t rows = (g.out_h - py + uy - 1) / uy;
                         for (int64_t qy = 0; qy < rows; ++qy) {
                           out_t* yr = yp + (qy * uy + py) * g.out_w;
                           const acc_t* a = acc + qy * pp.pitch;
                           if (x_phases == 2)
                             store_interleaved(yr, a, a + sums, g.out_w);
                           else
                             for (int64_t px = 0; px < x_phases; ++px) {
                               const int64_t columns = (g.out_w - px + ux - 1) / ux;
#pragma omp simd
                               for (int64_t qx = 0; qx < columns; ++qx)
                                 yr[qx * ux + px] = store<out_t>(a[px * sums + qx]);
                             }
                         }
                       }
                     }
                   });
}

// The taps one output pixel sums (its row and column runs), each at its input pixel's offset:
// ((row0 + input row) * W + input column) * stride, stride the elements from pixel to pixel
// (channels_last's C, the lane loop's kLanes).
template <typename acc_t>
void append_pixel_taps(std::vector<PlaneTap<acc_t>>& out, const acc_t* taps, const Upfirdn2dGeometry& g,
                       const TapRun<int64_t>& ry, const TapRun<int64_t>& rx, int64_t row0, int64_t stride) {
  for (int64_t a = 0; a < ry.n; ++a)
    for (int64_t b = 0; b < rx.n; ++b)
      out.push_back(
          {((row0 + ry.i0 + a) * g.W + rx.i0 + b) * stride, taps[(ry.k0 + a * g.up_y) * g.fw + rx.k0 + b * g.up_x]});
}

// NCHW planes of a few pixels (StyleGAN's 4-8 px layers and their gradients): the loops above
// pay their start-up, remainders and stores per plane, several hundred cycles for 16 outputs.
// Here kLanes planes at a time are turned into lanes: copied into a scratch pixel by pixel, the
// kLanes planes' samples of one pixel side by side, so that each output pixel is one sum_taps
// over its taps' pixels (as channels_last sums channels), then copied back plane by plane.
// Any geometry: each output pixel's taps come from the same runs as channels_last's. Measured
// against the plane loops on 8 x 512 planes (fp32, bf16): downsample2d and its gradient 2.3-2.9x
// faster at 8 px, the blur the same; at 16 px (256 pixels) 0.8-0.93x, hence the bound.
constexpr int64_t kLanes = 32;
constexpr int64_t kLanePlanePixels = 64;  // an input and an output plane of at most this many pixels

inline bool lane_loop_fits(const Upfirdn2dGeometry& g) {
  return g.H * g.W <= kLanePlanePixels && g.out_h * g.out_w <= kLanePlanePixels;
}

template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nchw_lanes(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g) {
  const std::vector<TapRun<int64_t>> rows = runs_of(g.out_h, g.up_y, g.down_y, g.pad_y0, g.fh, g.H);
  const std::vector<TapRun<int64_t>> cols = runs_of(g.out_w, g.up_x, g.down_x, g.pad_x0, g.fw, g.W);
  const int64_t in_pixels = g.H * g.W, out_pixels = g.out_h * g.out_w;
  // Output pixel o sums taps first_tap[o] .. first_tap[o + 1] of pixel_taps (offsets in lanes).
  std::vector<PlaneTap<acc_t>> pixel_taps;
  std::vector<size_t> first_tap(size_t(out_pixels + 1));
  for (int64_t oy = 0; oy < g.out_h; ++oy) {
    for (int64_t ox = 0; ox < g.out_w; ++ox) {
      const TapRun<int64_t> ry = rows[size_t(oy)], rx = cols[size_t(ox)];
      first_tap[size_t(oy * g.out_w + ox)] = pixel_taps.size();
      append_pixel_taps(pixel_taps, taps, g, ry, rx, 0, kLanes);
    }
  }
  first_tap[size_t(out_pixels)] = pixel_taps.size();
  const int64_t planes = g.N * g.C, blocks = (planes + kLanes - 1) / kLanes;
  at::parallel_for(0, blocks, grain(kLanes * std::max<int64_t>(1, int64_t(pixel_taps.size()))),
                   [&](int64_t b0, int64_t b1) {
                     // Lanes past the last plane hold zeros (or an earlier block's planes): summed, not stored.
                     std::vector<acc_t> storage(size_t((in_pixels + out_pixels) * kLanes));
                     acc_t* __restrict__ in = storage.data();
                     acc_t* __restrict__ out = in + in_pixels * kLanes;
                     for (int64_t block = b0; block < b1; ++block) {
                       const int64_t p0 = block * kLanes, lanes = std::min(kLanes, planes - p0);
                       for (int64_t l = 0; l < lanes; ++l) {
                         const in_t* __restrict__ xp = x + (p0 + l) * in_pixels;
                         for (int64_t i = 0; i < in_pixels; ++i) in[i * kLanes + l] = load(xp[i]);
                       }
                       const PlaneTap<acc_t>* t = pixel_taps.data();
                       for (int64_t o = 0; o < out_pixels; ++o)
                         sum_taps(out + o * kLanes, in, t + first_tap[size_t(o)], t + first_tap[size_t(o + 1)], kLanes);
                       for (int64_t l = 0; l < lanes; ++l) {
                         out_t* __restrict__ yp = y + (p0 + l) * out_pixels;
                         for (int64_t o = 0; o < out_pixels; ++o) yp[o] = store<out_t>(out[o * kLanes + l]);
                       }
                     }
                   });
}

// channels_last: every output pixel sums its taps' input pixels, each a contiguous run of C
// channels, so the inner loop runs along channels. A float or double input is summed by
// sum_taps, the pixel's taps held in registers four vectors of channels at a time; 16-bit input
// (converted on load) by a pass per tap.
template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nhwc(const in_t* x, const acc_t* taps, out_t* y, const Upfirdn2dGeometry& g) {
  const std::vector<TapRun<int64_t>> rows = runs_of(g.out_h, g.up_y, g.down_y, g.pad_y0, g.fh, g.H);
  const std::vector<TapRun<int64_t>> cols = runs_of(g.out_w, g.up_x, g.down_x, g.pad_x0, g.fw, g.W);
  const int64_t C = g.C;
  at::parallel_for(0, g.N * g.out_h, grain(g.out_w * C * g.fh * g.fw), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> acc_storage(static_cast<size_t>(C));
    acc_t* __restrict__ acc = acc_storage.data();
    std::vector<PlaneTap<acc_t>> pixel_taps;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.out_h, oy = r % g.out_h;
      const TapRun<int64_t> ry = rows[size_t(oy)];
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        const TapRun<int64_t> rx = cols[size_t(ox)];
        out_t* __restrict__ out = y + (r * g.out_w + ox) * C;
        if constexpr (std::is_same_v<in_t, acc_t>) {
          pixel_taps.clear();
          append_pixel_taps(pixel_taps, taps, g, ry, rx, n * g.H, C);
          if constexpr (std::is_same_v<out_t, acc_t>) {
            sum_taps(out, x, pixel_taps, C);
            continue;
          } else {
            sum_taps(acc, x, pixel_taps, C);
          }
        } else {
          std::fill(acc, acc + C, acc_t(0));
          for (int64_t a = 0; a < ry.n; ++a) {
            const acc_t* tap_row = taps + (ry.k0 + a * g.up_y) * g.fw;
            const in_t* row = x + ((n * g.H + ry.i0 + a) * g.W) * C;
            for (int64_t b = 0; b < rx.n; ++b) {
              const acc_t w = tap_row[rx.k0 + b * g.up_x];
              const in_t* __restrict__ px = row + (rx.i0 + b) * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) acc[c] += w * load(px[c]);
            }
          }
        }
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) out[c] = store<out_t>(acc[c]);
      }
    }
  });
}

// channels_last with a rank-one filter (StyleGAN's blur and resampling filters, and their
// gradients): each output row is a column pass, its taps' input rows summed over the whole row
// (one flat loop of W x C elements), then a row pass along that sum: fh + fw multiply-adds per
// output instead of fh x fw. The row pass's taps are built once per call, in pieces: consecutive
// output pixels with the same taps one input pixel apart (the blur's interior) are one flat loop
// over their pixels' channels. The direct loop above builds each pixel's fh x fw taps, and at 128
// channels that set-up cost as much as the sums (the blur at 8 x 128 x 256 x 256: 1.7x the
// reference forward+backward, 2.65x this way). Measured against it in one process, forward, fp32,
// 512 x 4 px to 128 x 256 px: the blur 1.13-1.33x faster, downsample2d 1.0-2.0x; upsample2d
// 0.91-1.08x (its pieces are single pixels of two taps), so upsampling keeps the direct loop.
template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_nhwc_rank_one(const in_t* x, const std::vector<acc_t>& column, const std::vector<acc_t>& row, out_t* y,
                             const Upfirdn2dGeometry& g) {
  const std::vector<TapRun<int64_t>> rows = runs_of(g.out_h, g.up_y, g.down_y, g.pad_y0, g.fh, g.H);
  const std::vector<TapRun<int64_t>> cols = runs_of(g.out_w, g.up_x, g.down_x, g.pad_x0, g.fw, g.W);
  const int64_t C = g.C, in_row = g.W * C, out_row = g.out_w * C;
  // Piece p: output pixels ox0 .. ox0 + pixels - 1, summing row_taps[first_tap .. end_tap) at
  // offsets (in the column pass's row) of its first pixel.
  struct Piece {
    int64_t ox0, pixels;
    size_t first_tap, end_tap;
  };
  std::vector<Piece> pieces;
  std::vector<PlaneTap<acc_t>> row_taps;
  for (int64_t ox = 0; ox < g.out_w; ++ox) {
    const TapRun<int64_t> rx = cols[size_t(ox)];
    if (ox > 0) {
      const TapRun<int64_t> previous = cols[size_t(ox - 1)];
      if (rx.n == previous.n && rx.k0 == previous.k0 && rx.i0 == previous.i0 + 1) {
        ++pieces.back().pixels;
        continue;
      }
    }
    pieces.push_back({ox, 1, row_taps.size(), 0});
    for (int64_t b = 0; b < rx.n; ++b) row_taps.push_back({(rx.i0 + b) * C, row[size_t(rx.k0 + b * g.up_x)]});
    pieces.back().end_tap = row_taps.size();
  }
  at::parallel_for(0, g.N * g.out_h, grain(in_row * g.fh + out_row * g.fw), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> between_storage(static_cast<size_t>(in_row));
    std::vector<acc_t> sums_storage(static_cast<size_t>(std::is_same_v<out_t, acc_t> ? 0 : out_row));
    acc_t* __restrict__ between = between_storage.data();
    std::vector<PlaneTap<acc_t>> column_taps;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.out_h, oy = r % g.out_h;
      const TapRun<int64_t> ry = rows[size_t(oy)];
      const in_t* x_rows = ry.n > 0 ? x + (n * g.H + ry.i0) * in_row : x;  // (no row: not read)
      if constexpr (std::is_same_v<in_t, acc_t>) {
        column_taps.clear();
        for (int64_t a = 0; a < ry.n; ++a) column_taps.push_back({a * in_row, column[size_t(ry.k0 + a * g.up_y)]});
        sum_taps(between, x_rows, column_taps, in_row);
      } else {
        std::fill(between, between + in_row, acc_t(0));
        for (int64_t a = 0; a < ry.n; ++a) {
          const acc_t w = column[size_t(ry.k0 + a * g.up_y)];
          const in_t* __restrict__ in = x_rows + a * in_row;
#pragma omp simd
          for (int64_t i = 0; i < in_row; ++i) between[i] += w * load(in[i]);
        }
      }
      acc_t* sums;
      if constexpr (std::is_same_v<out_t, acc_t>)
        sums = y + r * out_row;
      else
        sums = sums_storage.data();
      for (const Piece& p : pieces)
        sum_taps(sums + p.ox0 * C, between, row_taps.data() + p.first_tap, row_taps.data() + p.end_tap, p.pixels * C);
      if constexpr (!std::is_same_v<out_t, acc_t>) {
        out_t* __restrict__ out = y + r * out_row;
#pragma omp simd
        for (int64_t i = 0; i < out_row; ++i) out[i] = store<out_t>(sums[i]);
      }
    }
  });
}

template <typename in_t, typename out_t, typename acc_t>
void upfirdn2d_layout(const void* x, const acc_t* taps, void* y, const Upfirdn2dGeometry& g, bool channels_last) {
  const auto* in = static_cast<const in_t*>(x);
  auto* out = static_cast<out_t*>(y);
  std::vector<acc_t> column, row;
  if (channels_last && g.up_x == 1 && g.up_y == 1 && rank_one_factors(taps, g.fh, g.fw, column, row))
    upfirdn2d_nhwc_rank_one(in, column, row, out, g);
  else if (channels_last)
    upfirdn2d_nhwc(in, taps, out, g);
  else if (lane_loop_fits(g))
    upfirdn2d_nchw_lanes(in, taps, out, g);
  else if (plane_loop_fits(g) && g.up_x == 1 && g.up_y == 1)
    upfirdn2d_nchw_down_bands(in, taps, out, g);
  else if (plane_loop_fits(g))
    upfirdn2d_nchw_up_planes(in, taps, out, g);
  else
    upfirdn2d_nchw(in, taps, out, g);
}

// dt: the op's dtype. Stage::Whole reads and writes it; a separable filter's Stage::Rows reads it
// and writes the accumulation dtype, Stage::Columns the reverse. taps: acc_type (float; double
// for double), the correlation kernel (times the gain where the stage applies it).
void upfirdn2d_entry(c10::ScalarType dt, Stage stage, const void* x, const void* taps, void* y,
                     const Upfirdn2dGeometry& g, bool channels_last) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_upfirdn2d", [&] {
    using acc_t = acc_type<scalar_t>;
    const auto* f = static_cast<const acc_t*>(taps);
    if (stage == Stage::Rows)
      upfirdn2d_layout<scalar_t, acc_t>(x, f, y, g, channels_last);
    else if (stage == Stage::Columns)
      upfirdn2d_layout<acc_t, scalar_t>(x, f, y, g, channels_last);
    else
      upfirdn2d_layout<scalar_t, scalar_t>(x, f, y, g, channels_last);
  });
}

}  // namespace

#endif  // FASTGAN_CPU_ISA
