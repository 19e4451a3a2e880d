// The CUDA kernel of upfirdn2d (StyleGAN's upsample, FIR filter, downsample): one launch, each
// thread one output element at a time (a grid-stride walk over at most one wave of blocks),
// summing only the taps that meet an input sample (fir_taps.h's runs, in 32-bit index math).
// Consecutive threads take consecutive outputs in the tensor's own layout, so a warp reads a
// row of an NCHW plane, or a run of channels of an NHWC pixel, in coalesced loads; the filter
// (a few hundred bytes at most) is read through the cache by every thread.
// Forward, backward (upfirdn2d with the factors swapped and the filter flipped) and higher
// orders are all this kernel. No reduction across threads: results are the same bits from
// run to run.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common.cuh"
#include "../args/upfirdn2d.h"

namespace fastgan {
namespace cuda {
namespace {

// The geometry in the kernel's 32-bit index types (args/upfirdn2d.h keeps each axis below 2^30);
// the element offsets stay 64-bit.
struct FirParams {
  int H, W, out_h, out_w;
  int up_x, up_y, down_x, down_y, pad_x0, pad_y0, fh, fw;
  bool separable, flip;
  int64_t C;
};

FirParams fir_params(const Upfirdn2dGeometry& g, bool flip_filter) {
  return {int(g.H),    int(g.W),      int(g.out_h),  int(g.out_w),  int(g.up_x),
          int(g.up_y), int(g.down_x), int(g.down_y), int(g.pad_x0), int(g.pad_y0),
          int(g.fh),   int(g.fw),     g.separable,   flip_filter,   g.C};
}

// The correlation kernel's tap (ky, kx): the filter flipped unless flip, a separable filter's
// outer product.
template <typename A>
__device__ __forceinline__ A tap(const A* __restrict__ f, const FirParams& p, int ky, int kx) {
  const int sy = filter_index(ky, p.fh, p.flip), sx = filter_index(kx, p.fw, p.flip);
  return p.separable ? f[sy] * f[sx] : f[sy * p.fw + sx];
}

template <typename scalar_t, bool CHANNELS_LAST>
__global__ void FASTGAN_KERNEL_BOUNDS upfirdn2d_kernel(const scalar_t* __restrict__ x,
                                                       const acc_type<scalar_t>* __restrict__ f,
                                                       scalar_t* __restrict__ y, FirParams p, int64_t total,
                                                       acc_type<scalar_t> gain) {
  using A = acc_type<scalar_t>;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; total > i; i += step) {
    // The output element's coordinates in its layout: NCHW walks x fastest, NHWC channels.
    int64_t n, c, rest;
    int oy, ox;
    if (CHANNELS_LAST) {
      c = i % p.C, rest = i / p.C;
      ox = int(rest % p.out_w), rest /= p.out_w;
      oy = int(rest % p.out_h), n = rest / p.out_h;
    } else {
      ox = int(i % p.out_w), rest = i / p.out_w;
      oy = int(rest % p.out_h), rest /= p.out_h;
      c = rest % p.C, n = rest / p.C;
    }
    const TapRun<int> ry = tap_run<int>(oy, p.up_y, p.down_y, p.pad_y0, p.fh, p.H);
    const TapRun<int> rx = tap_run<int>(ox, p.up_x, p.down_x, p.pad_x0, p.fw, p.W);
    // Element (iy, ix) of the input's (n, c) image at base + iy * row_step + ix * col_step.
    const int64_t base = CHANNELS_LAST ? n * p.H * p.W * p.C + c : (n * p.C + c) * p.H * p.W;
    const int64_t col_step = CHANNELS_LAST ? p.C : 1, row_step = col_step * p.W;
    A acc = A(0);
    for (int a = 0; a < ry.n; ++a) {
      const int ky = ry.k0 + a * p.up_y;
      const scalar_t* row = x + base + int64_t(ry.i0 + a) * row_step + int64_t(rx.i0) * col_step;
      for (int b = 0; b < rx.n; ++b) acc += tap(f, p, ky, rx.k0 + b * p.up_x) * A(row[int64_t(b) * col_step]);
    }
    y[i] = scalar_t(acc * gain);
  }
}

at::Tensor upfirdn2d_cuda(const at::Tensor& input, const at::Tensor& filter, at::IntArrayRef up, at::IntArrayRef down,
                          at::IntArrayRef padding, bool flip_filter, double gain) {
  DeviceGuard guard(input.device());
  const Upfirdn2dTensors t = upfirdn2d_tensors(input, filter, up, down, padding);
  const int64_t total = t.out.numel();
  if (total == 0) return t.out;
  const FirParams p = fir_params(t.g, flip_filter);
  auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.input.scalar_type(), "upfirdn2d_cuda", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* x = t.input.const_data_ptr<scalar_t>();
    const A* f = t.filter.const_data_ptr<A>();
    scalar_t* y = t.out.data_ptr<scalar_t>();
    if (t.channels_last)
      launch(upfirdn2d_kernel<scalar_t, true>, dim3(grid_for(total)), dim3(kThreads), 0, stream, x, f, y, p, total,
             A(gain));
    else
      launch(upfirdn2d_kernel<scalar_t, false>, dim3(grid_for(total)), dim3(kThreads), 0, stream, x, f, y, p, total,
             A(gain));
  });
  return t.out;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(FASTGAN_DEVICE_LIBRARY, FASTGAN_DEVICE_KEY, m) { m.impl("upfirdn2d", &cuda::upfirdn2d_cuda); }

}  // namespace fastgan
