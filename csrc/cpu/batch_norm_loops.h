// The loops of fused BatchNorm + activation (statistics, normalise + activate, the backward's
// reduction and elementwise passes), compiled once per instruction set: batch_norm_act.cpp
// includes it through for_each_isa.h. Loops are plain C++ the compiler vectorises
// (-fopenmp-simd); channels are spread over threads with at::parallel_for. Every per-channel
// result is computed by one thread in a fixed order, so results do not depend on the thread
// count.
//
// No #pragma once: included once per instruction set, by design.

namespace {

// Chan et al.'s merge of (count, mean, M2) partials, in double.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(double nb, double mb, double m2b) {
    if (nb == 0) return;
    double nn = n + nb, d = mb - mean;
    mean += d * (nb / nn);
    m2 += m2b + d * d * (n * nb / nn);
    n = nn;
  }
};

// NCHW reductions walk a channel in runs of at most kRun elements: a group of whole planes
// when planes are small (a DCGAN's 4x4 and 8x8 layers), a slice of one plane when they are
// large. Inside a run, partial sums go to kLanes accumulators (one per position modulo
// kLanes) rather than one register reduced at the end of every plane: on 4x4 planes that
// horizontal reduction per plane cost more than the arithmetic.
constexpr int64_t kLanes = 64;

struct PlaneRun {
  int64_t n0, n1, start, len;  // planes [n0, n1) of the channel, elements [start, start + len) of each
  int64_t count() const { return (n1 - n0) * len; }
};

// Calls visit(run) for every run of an NCHW channel, in a fixed order.
template <typename Visit>
C10_ALWAYS_INLINE void for_each_run(const Geometry& g, Visit&& visit) {
  const int64_t run_len = std::min(g.HW, kRun);
  const int64_t planes = g.HW >= kRun ? 1 : kRun / g.HW;
  for (int64_t n0 = 0; n0 < g.N; n0 += planes)
    for (int64_t s0 = 0; s0 < g.HW; s0 += run_len)
      visit(PlaneRun{n0, std::min(g.N, n0 + planes), s0, std::min(run_len, g.HW - s0)});
}

template <typename acc_t>
C10_ALWAYS_INLINE acc_t sum_lanes(const acc_t* lanes) {
  acc_t total = 0;
  for (int64_t j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

// f(width) with the plane width as a compile-time constant for the DCGAN sizes (1x1, 2x2,
// 4x4, 8x8 planes), 0 for any other: a plane's loop is then unrolled into a few vector
// instructions instead of a loop with a runtime trip count and its remainder handling.
template <typename F>
C10_ALWAYS_INLINE void with_plane_width(int64_t hw, F&& f) {
  switch (hw) {
    case 1: return f(std::integral_constant<int64_t, 1>());
    case 4: return f(std::integral_constant<int64_t, 4>());
    case 16: return f(std::integral_constant<int64_t, 16>());
    case 64: return f(std::integral_constant<int64_t, 64>());
    default: return f(std::integral_constant<int64_t, 0>());
  }
}

// body(i, j) for i in [0, len), j = i mod kLanes (the accumulator lane of element i): whole
// blocks of kLanes with a constant trip count, then the rest. With the block's length known,
// GCC unrolls it and keeps the lanes in registers; with a runtime trip count per block
// (min(kLanes, len - j0)) it loaded and stored the lane array around every vector of data,
// and the statistics of 1024 planes of 1024 values took 1.8x as long (one AVX2 core).
template <typename Body>
C10_ALWAYS_INLINE void for_each_lane(int64_t len, Body&& body) {
  int64_t j0 = 0;
  for (; j0 + kLanes <= len; j0 += kLanes) {
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) body(j0 + j, j);
  }
  const int64_t rest = len - j0;
#pragma omp simd
  for (int64_t j = 0; j < rest; ++j) body(j0 + j, j);
}

// Two-pass mean and M2 of one run of channel c: accurate for large means (1e3 +- 1)
// because the second pass subtracts the run's own mean before squaring; the run is small
// enough to be read again from L1. W: the plane width if known at compile time (then a
// run is whole planes of W elements), else 0.
template <int64_t W, typename scalar_t>
void run_moments(const scalar_t* x, const Geometry& g, int64_t c, const PlaneRun& r, Moments& into) {
  using acc_t = acc_type<scalar_t>;
  const int64_t len = W > 0 ? W : r.len;
  alignas(64) acc_t lanes[kLanes];
  std::fill(lanes, lanes + kLanes, acc_t(0));
  for (int64_t n = r.n0; n < r.n1; ++n) {
    const scalar_t* p = x + (n * g.C + c) * g.HW + r.start;
    for_each_lane(len, [&](int64_t i, int64_t j) { lanes[j] += load(p[i]); });
  }
  const acc_t mean = sum_lanes(lanes) / acc_t(r.count());
  std::fill(lanes, lanes + kLanes, acc_t(0));
  for (int64_t n = r.n0; n < r.n1; ++n) {
    const scalar_t* p = x + (n * g.C + c) * g.HW + r.start;
    for_each_lane(len, [&, mean](int64_t i, int64_t j) {
      const acc_t d = load(p[i]) - mean;
      lanes[j] += d * d;
    });
  }
  into.merge(double(r.count()), double(mean), double(sum_lanes(lanes)));
}

// Per-channel (mean, biased var) into mean_out/var_out (stats dtype).
template <typename scalar_t, typename stat_t>
void compute_stats(const scalar_t* x, const Geometry& g, stat_t* mean_out, stat_t* var_out) {
  if (!g.channels_last) {
    at::parallel_for(0, g.C, grain(g.count()), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        Moments m;
        with_plane_width(g.HW, [&](auto width) {
          for_each_run(g, [&](const PlaneRun& r) { run_moments<decltype(width)::value>(x, g, c, r, m); });
        });
        mean_out[c] = stat_t(m.mean);
        var_out[c] = stat_t(m.m2 / m.n);
      }
    });
    return;
  }
  // NHWC: rows of C contiguous channels. Each thread owns a channel range and walks all
  // rows in fixed blocks, accumulating across channels so the inner loop is contiguous. One
  // pass per block: sums of d and d^2 with d = x - k, k the channel's value in the block's
  // first row. k is a sample of the data, so d stays on the scale of the spread even when
  // the mean is large (1e3 +- 1), and M2 = sum(d^2) - sum(d)^2 / n cancels little.
  using acc_t = acc_type<scalar_t>;
  const int64_t rows = g.count();
  const int64_t block = std::max<int64_t>(1, kRun * 4 / std::max<int64_t>(g.C, 1));
  at::parallel_for(0, g.C, std::max<int64_t>(16, grain(rows)), [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<Moments> m(width);
    std::vector<acc_t> k(width), s(width), q(width);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t len = std::min(block, rows - r0);
      const scalar_t* first = x + r0 * g.C + c0;
      for (int64_t c = 0; c < width; ++c) k[c] = load(first[c]);
      std::fill(s.begin(), s.end(), acc_t(0));
      std::fill(q.begin(), q.end(), acc_t(0));
      const acc_t* kp = k.data();
      acc_t* sp = s.data();
      acc_t* qp = q.data();
      for (int64_t r = r0; r < r0 + len; ++r) {
        const scalar_t* row = x + r * g.C + c0;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          const acc_t d = load(row[c]) - kp[c];
          sp[c] += d;
          qp[c] += d * d;
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        const double sd = double(s[c]), n = double(len);
        m[c].merge(n, double(k[c]) + sd / n, std::max(0.0, double(q[c]) - sd * sd / n));
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      mean_out[c0 + c] = stat_t(m[c].mean);
      var_out[c0 + c] = stat_t(m[c].m2 / m[c].n);
    }
  });
}

template <Activation ACT, typename scalar_t, typename acc_t>
void apply(const scalar_t* x, scalar_t* y, const Geometry& g, const acc_t* scale, const acc_t* shift, acc_t slope) {
  if (!g.channels_last) {
    with_plane_width(g.HW, [&, slope](auto width) {
      const int64_t hw = decltype(width)::value > 0 ? decltype(width)::value : g.HW;
      at::parallel_for(0, g.N * g.C, grain(g.HW), [&, slope, hw](int64_t p0, int64_t p1) {
        for (int64_t p = p0, c = p0 % g.C; p < p1; ++p, c = c + 1 == g.C ? 0 : c + 1) {
          const acc_t s = scale[c], b = shift[c];
          const scalar_t* xp = x + p * hw;
          store_each(y + p * hw, hw,
                     [&, slope](int64_t i) { return activate_t<ACT>(affine(load(xp[i]), s, b), slope); });
        }
      });
    });
    return;
  }
  at::parallel_for(0, g.count(), grain(g.C), [&, slope](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* xp = x + r * g.C;
      store_each(y + r * g.C, g.C,
                 [&, slope](int64_t c) { return activate_t<ACT>(affine(load(xp[c]), scale[c], shift[c]), slope); });
    }
  });
}

// Backward. g = grad_out * act'(pre-activation), with the pre-activation recomputed from
// the input. Per channel: sum_g = sum(g), sum_gx = sum(g * (x - mean)).
//   grad_bias = sum_g, grad_weight = invstd * sum_gx
//   training: dx = scale * (g - sum_g / n - (x - mean) * invstd^2 * sum_gx / n)
//   eval:     dx = scale * g
// sum(g) and sum(g * (x - mean)) over one run of channel c, added to tg and tgx (W as in
// run_moments).
template <Activation ACT, int64_t W, typename scalar_t, typename acc_t>
void run_grad_sums(const scalar_t* dy, const scalar_t* x, const Geometry& g, int64_t c, const PlaneRun& r, acc_t s,
                   acc_t b, acc_t m, acc_t slope, double& tg, double& tgx) {
  const int64_t len = W > 0 ? W : r.len;
  alignas(64) acc_t ag[kLanes], agx[kLanes];
  std::fill(ag, ag + kLanes, acc_t(0));
  std::fill(agx, agx + kLanes, acc_t(0));
  for (int64_t n = r.n0; n < r.n1; ++n) {
    const int64_t off = (n * g.C + c) * g.HW + r.start;
    const scalar_t* xp = x + off;
    const scalar_t* dp = dy + off;
    for_each_lane(len, [&, s, b, m, slope](int64_t i, int64_t j) {
      const acc_t xv = load(xp[i]);
      const acc_t gv = load(dp[i]) * activation_grad_from_input_t<ACT>(affine(xv, s, b), slope);
      ag[j] += gv;
      agx[j] += gv * (xv - m);
    });
  }
  tg += sum_lanes(ag);
  tgx += sum_lanes(agx);
}

template <Activation ACT, typename scalar_t, typename acc_t>
void backward_sums(const scalar_t* dy, const scalar_t* x, const Geometry& g, const acc_t* scale, const acc_t* shift,
                   const acc_t* mean, acc_t slope, double* sum_g, double* sum_gx) {
  if (!g.channels_last) {
    at::parallel_for(0, g.C, grain(g.count()), [&, slope](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double tg = 0, tgx = 0;
        with_plane_width(g.HW, [&](auto width) {
          for_each_run(g, [&](const PlaneRun& r) {
            run_grad_sums<ACT, decltype(width)::value>(dy, x, g, c, r, scale[c], shift[c], mean[c], slope, tg, tgx);
          });
        });
        sum_g[c] = tg;
        sum_gx[c] = tgx;
      }
    });
    return;
  }
  const int64_t rows = g.count();
  const int64_t block = std::max<int64_t>(1, kRun * 4 / std::max<int64_t>(g.C, 1));
  at::parallel_for(0, g.C, std::max<int64_t>(16, grain(rows)), [&, slope](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<acc_t> ag(width), agx(width);
    std::vector<double> tg(width, 0.0), tgx(width, 0.0);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t r1 = std::min(rows, r0 + block);
      std::fill(ag.begin(), ag.end(), acc_t(0));
      std::fill(agx.begin(), agx.end(), acc_t(0));
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xp = x + r * g.C + c0;
        const scalar_t* dp = dy + r * g.C + c0;
        const acc_t* sp = scale + c0;
        const acc_t* bp = shift + c0;
        const acc_t* mp = mean + c0;
        acc_t* agp = ag.data();
        acc_t* agxp = agx.data();
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          const acc_t xv = load(xp[c]);
          const acc_t gv = load(dp[c]) * activation_grad_from_input_t<ACT>(affine(xv, sp[c], bp[c]), slope);
          agp[c] += gv;
          agxp[c] += gv * (xv - mp[c]);
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        tg[c] += ag[c];
        tgx[c] += agx[c];
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      sum_g[c0 + c] = tg[c];
      sum_gx[c0 + c] = tgx[c];
    }
  });
}

template <Activation ACT, typename scalar_t, typename acc_t>
void backward_input(const scalar_t* dy, const scalar_t* x, scalar_t* dx, const Geometry& g, const acc_t* scale,
                    const acc_t* shift, const acc_t* mean, const acc_t* k_mean_g, const acc_t* k_x, acc_t slope) {
  // dx = scale * (g - k_mean_g - (x - mean) * k_x); eval passes k_mean_g = k_x = 0.
  if (!g.channels_last) {
    with_plane_width(g.HW, [&, slope](auto width) {
      const int64_t hw = decltype(width)::value > 0 ? decltype(width)::value : g.HW;
      at::parallel_for(0, g.N * g.C, grain(g.HW), [&, slope, hw](int64_t p0, int64_t p1) {
        for (int64_t p = p0, c = p0 % g.C; p < p1; ++p, c = c + 1 == g.C ? 0 : c + 1) {
          const acc_t s = scale[c], b = shift[c], m = mean[c], km = k_mean_g[c], kx = k_x[c];
          const scalar_t* xp = x + p * hw;
          const scalar_t* dp = dy + p * hw;
          store_each(dx + p * hw, hw, [&, slope](int64_t i) {
            const acc_t xv = load(xp[i]);
            const acc_t gv = load(dp[i]) * activation_grad_from_input_t<ACT>(affine(xv, s, b), slope);
            return s * (gv - km - (xv - m) * kx);
          });
        }
      });
    });
    return;
  }
  at::parallel_for(0, g.count(), grain(g.C), [&, slope](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* xp = x + r * g.C;
      const scalar_t* dp = dy + r * g.C;
      store_each(dx + r * g.C, g.C, [&, slope](int64_t c) {
        const acc_t xv = load(xp[c]);
        const acc_t gv = load(dp[c]) * activation_grad_from_input_t<ACT>(affine(xv, scale[c], shift[c]), slope);
        return scale[c] * (gv - k_mean_g[c] - (xv - mean[c]) * k_x[c]);
      });
    }
  });
}

// --- Entry points -----------------------------------------------------------------------

void stats_entry(c10::ScalarType dt, const void* x, const Geometry& g, void* mean, void* var) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_stats", [&] {
    using stat_t = acc_type<scalar_t>;
    compute_stats(static_cast<const scalar_t*>(x), g, static_cast<stat_t*>(mean), static_cast<stat_t*>(var));
  });
}

void apply_entry(c10::ScalarType dt, Activation act, const void* x, void* y, const Geometry& g, const void* scale,
                 const void* shift, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_apply", [&] {
    using acc_t = acc_type<scalar_t>;
    dispatch_activation(act, [&](auto tag) {
      apply<decltype(tag)::value>(static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y), g,
                                  static_cast<const acc_t*>(scale), static_cast<const acc_t*>(shift), acc_t(slope));
    });
  });
}

void backward_sums_entry(c10::ScalarType dt, Activation act, const void* dy, const void* x, const Geometry& g,
                         const void* scale, const void* shift, const void* mean, double slope, double* sum_g,
                         double* sum_gx) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_backward_sums", [&] {
    using acc_t = acc_type<scalar_t>;
    dispatch_activation(act, [&](auto tag) {
      backward_sums<decltype(tag)::value>(static_cast<const scalar_t*>(dy), static_cast<const scalar_t*>(x), g,
                                          static_cast<const acc_t*>(scale), static_cast<const acc_t*>(shift),
                                          static_cast<const acc_t*>(mean), acc_t(slope), sum_g, sum_gx);
    });
  });
}

void backward_input_entry(c10::ScalarType dt, Activation act, const void* dy, const void* x, void* dx,
                          const Geometry& g, const void* scale, const void* shift, const void* mean,
                          const void* k_mean_g, const void* k_x, double slope) {
  FASTGAN_CPU_DISPATCH(dt, "fastgan_backward_input", [&] {
    using acc_t = acc_type<scalar_t>;
    dispatch_activation(act, [&](auto tag) {
      backward_input<decltype(tag)::value>(
          static_cast<const scalar_t*>(dy), static_cast<const scalar_t*>(x), static_cast<scalar_t*>(dx), g,
          static_cast<const acc_t*>(scale), static_cast<const acc_t*>(shift), static_cast<const acc_t*>(mean),
          static_cast<const acc_t*>(k_mean_g), static_cast<const acc_t*>(k_x), acc_t(slope));
    });
  });
}

}  // namespace
