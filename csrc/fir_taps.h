// The index math of upfirdn2d (StyleGAN's upsample, FIR filter, downsample), one definition for
// the CPU loops and the CUDA kernels.
//
// Along one axis, with input length `in`, upsampling factor `up`, padding `pad0` before the
// upsampled signal and downsampling factor `down`, output sample o is
//   out[o] = sum over k of  F[k] * U[o * down + k - pad0],
// where F is the correlation kernel (the filter, flipped unless flip_filter) of `taps` taps and
// U is the input upsampled by inserting up - 1 zeros after each sample: U[u] = x[u / up] when u
// is a multiple of up and 0 <= u / up < in, else 0. Only every up-th tap meets a sample, so
// an output reads the taps k0, k0 + up, ... against the inputs i0, i0 + 1, ...: a run of n
// pairs (the polyphase decomposition). The 2-D op is the product of the two axes' runs.
#pragma once

#include "activations.h"  // FASTGAN_INLINE

namespace fastgan {

template <typename I>
struct TapRun {
  I k0, i0, n;  // first tap, first input sample, number of (tap, sample) pairs
};

// I is int64_t on the CPU; int in the CUDA kernels, whose arguments checks keep every
// intermediate below 2^31 (args/upfirdn2d.h).
template <typename I>
FASTGAN_INLINE TapRun<I> tap_run(I o, I up, I down, I pad0, I taps, I in) {
  const I u = o * down - pad0;  // the upsampled coordinate tap 0 meets
  const I r = ((u % up) + up) % up;
  I k0 = r == 0 ? I(0) : up - r;  // the first tap that meets a multiple of up
  I i0 = (u + k0) / up;           // exact
  if (i0 < 0) {                   // before the signal: skip to its first sample
    k0 += (-i0) * up;
    i0 = 0;
  }
  I n = 0;
  if (k0 < taps && i0 < in) {
    const I by_taps = (taps - k0 + up - 1) / up;
    n = by_taps < in - i0 ? by_taps : in - i0;
  }
  return {k0, i0, n};
}

// Whether one axis's sizes fit the CUDA kernels' 32-bit index math with room for a sum of two:
// every coordinate of the upsampled, padded signal and every factor below 2^30.
FASTGAN_INLINE bool fir_axis_fits(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps) {
  constexpr int64_t kLimit = int64_t(1) << 30;
  const int64_t a0 = pad0 < 0 ? -pad0 : pad0, a1 = pad1 < 0 ? -pad1 : pad1;
  return in < kLimit && up < kLimit && down < kLimit && taps < kLimit && a0 < kLimit && a1 < kLimit &&
         in * up + a0 + a1 + taps < kLimit;
}

// The filter element that tap k of the correlation kernel reads along an axis of `taps`: the
// filter flipped (upfirdn2d convolves) unless flip_filter (it correlates).
template <typename I>
FASTGAN_INLINE I filter_index(I k, I taps, bool flip_filter) {
  return flip_filter ? k : taps - 1 - k;
}

// Output length along one axis (may be <= 0: args/upfirdn2d.h refuses such a call).
FASTGAN_INLINE int64_t fir_out_len(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps) {
  const int64_t span = in * up + pad0 + pad1 - taps;  // the last tap's reach, 0-based
  return span < 0 ? 0 : span / down + 1;
}

// The padding [x0, x1, y0, y1] of upfirdn2d's adjoint (its gradient with respect to its input):
// upfirdn2d of the output's gradient with up and down swapped and the filter flipped. Forward:
// out[o] = sum_k F[k] U[o * down + k - pad0], so input sample i collects F[i * up + pad0 - o *
// down] from every output o; read backwards, that is a correlation with pad0' = taps - pad0 - 1,
// and pad1' leaves exactly `in` samples.
struct FirAdjointPadding {
  int64_t v[4];
};
inline FirAdjointPadding fir_adjoint_padding(int64_t fw, int64_t fh, int64_t up_x, int64_t up_y, int64_t down_x,
                                             int64_t down_y, const int64_t (&padding)[4], int64_t in_h, int64_t in_w,
                                             int64_t out_h, int64_t out_w) {
  return {{fw - padding[0] - 1, in_w * up_x - out_w * down_x + padding[0] - up_x + 1, fh - padding[2] - 1,
           in_h * up_y - out_h * down_y + padding[2] - up_y + 1}};
}

}  // namespace fastgan
