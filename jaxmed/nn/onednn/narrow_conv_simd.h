// narrow_conv.h's kernels, written once against the vector operations of the namespace
// that includes this file: narrow_conv.h includes it twice, inside narrow_conv::avx512 and
// narrow_conv::avx2, each compiled for its instruction set (#pragma GCC target). Deliberately
// no include guard.
//
// The including namespace provides simd.h's vocabulary (Vec, kLanes, Zero, Load, Store,
// Broadcast, Fma, FourSums) and kPixels (output pixels summed at once), kUnrollBlocks (how far
// GCC unrolls the forward's loop over kLanes-channel blocks) and kTapsPerPass (kernel taps per
// pass of the weight gradient).

// kPixels adjacent output pixels from j on: independent sums keep both FMA units busy
// (one pixel alone is four chains of dependent FMAs) and share each weight load.
// kBlocks = in_c / kLanes and kKernel = k_h = k_w when known at compile time, else 0 (read from s).
// Each pixel's four sums (outputs 0-3) go to sink(column, sums).
template <int kPixelsHere, int kBlocks, int kKernel, typename Sink>
inline void ForwardPixels(const Shape& s, const float* const* rows, const float* weights, int64_t j,
                          const Sink& sink) {
  const int64_t in_c = kBlocks ? kBlocks * kLanes : s.in_c, blocks = in_c / kLanes;
  const int64_t k_h = kKernel ? kKernel : s.k_h, k_w = kKernel ? kKernel : s.k_w;
  Vec acc[kPixelsHere][kMaxOutChannels];
#pragma GCC unroll 16
  for (int p = 0; p < kPixelsHere; ++p)
#pragma GCC unroll 4
    for (int o = 0; o < kMaxOutChannels; ++o) acc[p][o] = Zero();
  const float* w_tap = weights;
  for (int64_t di = 0; di < k_h; ++di) {
    for (int64_t dj = 0; dj < k_w; ++dj, w_tap += kMaxOutChannels * in_c) {
      const float* pixel = rows[di] + (j + dj) * in_c;
#pragma GCC unroll kUnrollBlocks
      for (int64_t b = 0; b < blocks; ++b) {
        // The pixels' inputs in registers, then one weight at a time: 4 * kPixels sums, kPixels
        // inputs and 1 weight (16 registers for AVX2's 3 pixels; 4 weights there would spill).
        Vec v[kPixelsHere];
#pragma GCC unroll 16
        for (int p = 0; p < kPixelsHere; ++p) v[p] = Load(pixel + p * in_c + b * kLanes);
#pragma GCC unroll 4
        for (int o = 0; o < kMaxOutChannels; ++o) {
          const Vec w = Load(w_tap + o * in_c + b * kLanes);
#pragma GCC unroll 16
          for (int p = 0; p < kPixelsHere; ++p) acc[p][o] = Fma(v[p], w, acc[p][o]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < kPixelsHere; ++p) sink(j + p, FourSums(acc[p][0], acc[p][1], acc[p][2], acc[p][3]));
}

// One output row, kPixels pixels at a time, prefetching the input row `next` (PaddedRows::Next)
// a few cache lines per pixel group: where memory is slow and contended, the row's copy
// otherwise waits on it.
template <int kBlocks, int kKernel, typename Sink>
void ForwardRow(const Shape& s, const float* const* rows, const float* next, const float* weights,
                const Sink& sink) {
  const int64_t groups = std::max<int64_t>(1, s.out_w / kPixels);
  const float* line = next;
  const float* lines_end = next ? next + s.in_w * s.in_c : next;
  const int64_t lines_per_group = ((lines_end - line) / kCacheLineFloats + groups - 1) / groups;
  int64_t j = 0;
  for (; j + kPixels <= s.out_w; j += kPixels) {
    for (int64_t k = 0; k < lines_per_group && line < lines_end; ++k, line += kCacheLineFloats) {
      _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
    }
    ForwardPixels<kPixels, kBlocks, kKernel>(s, rows, weights, j, sink);
  }
  for (; j < s.out_w; ++j) ForwardPixels<1, kBlocks, kKernel>(s, rows, weights, j, sink);
}

// conv(x, w) row by row: row_sink(n, i) gives the sink of output row i of image n. w is
// HWIO with out_c <= 4 outputs.
template <typename RowSink>
void ForwardRows(const Shape& s, const float* x, const float* w, const RowSink& row_sink) {
  const int64_t taps = s.k_h * s.k_w;
  // Weights as [tap][output (padded to 4 with zeros)][input channel]: each vector load is kLanes inputs.
  AlignedFloats aligned_weights(taps * kMaxOutChannels * s.in_c);
  float* weights = aligned_weights.data();
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < s.in_c; ++c)
      for (int64_t o = 0; o < s.out_c; ++o)
        weights[(t * kMaxOutChannels + o) * s.in_c + c] = w[(t * s.in_c + c) * s.out_c + o];
  // The sub-pixel layers (2x2 kernels, 32 inputs) with their sizes as constants, which the compiler unrolls.
  constexpr int kSubpixelChannels = 32;
  const bool subpixel = s.k_h == 2 && s.k_w == 2 && s.in_c == kSubpixelChannels;
  PaddedRows padded(s);
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t i = 0; i < s.out_h; ++i) {
      const auto sink = row_sink(n, i);
      const float* const* rows = padded.Load(x, n, i);
      const float* next = padded.Next(x, n, i);
      if (subpixel) {
        ForwardRow<kSubpixelChannels / kLanes, 2>(s, rows, next, weights, sink);
      } else {
        ForwardRow<0, 0>(s, rows, next, weights, sink);
      }
    }
  }
}

// y = conv(x, w), NHWC.
inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
  ForwardRows(s, x, w, [&s, y](int64_t n, int64_t i) {
    float* row = y + (n * s.out_h + i) * s.out_w * s.out_c;
    return [&s, row](int64_t j, __m128 sums) {
      if (s.out_c == kMaxOutChannels) {
        _mm_storeu_ps(row + j * s.out_c, sums);
      } else {
        alignas(16) float four[kMaxOutChannels];
        _mm_store_ps(four, sums);
        std::copy(four, four + s.out_c, row + j * s.out_c);
      }
    };
  });
}

// The sub-pixel form of a 4x4 stride-2 transposed convolution to one channel, stored
// straight into its (height, width) result: output (i, j) of the stride-1 convolution holds
// the four phases (a, b) at outputs 2a + b, which are pixels (2i - 1 + a, 2j - 1 + b) of
// the result (those inside it). conv2d.cc's RunSubpixel otherwise writes the phases to a
// buffer and interleaves them from there.
inline void ForwardSubpixel(const Shape& s, const float* x, const float* w, float* result, int64_t height,
                            int64_t width) {
  ForwardRows(s, x, w, [=](int64_t n, int64_t i) {
    float* image = result + n * height * width;
    float* top = 2 * i - 1 >= 0 && 2 * i - 1 < height ? image + (2 * i - 1) * width : nullptr;
    float* bottom = 2 * i < height ? image + 2 * i * width : nullptr;
    return [=](int64_t j, __m128 sums) {
      const int64_t column = 2 * j - 1;
      if (column >= 0 && column + 1 < width) {
        if (top) _mm_storel_pi(reinterpret_cast<__m64*>(top + column), sums);
        if (bottom) _mm_storeh_pi(reinterpret_cast<__m64*>(bottom + column), sums);
        return;
      }
      alignas(16) float four[kMaxOutChannels];
      _mm_store_ps(four, sums);
      for (int64_t b = 0; b < 2; ++b) {
        if (column + b < 0 || column + b >= width) continue;
        if (top) top[column + b] = four[b];
        if (bottom) bottom[column + b] = four[2 + b];
      }
    };
  });
}

// dw = d conv / dw summed over the batch, written (not added) to dw, HWIO float32.
// Sums: kLanes input channels x kTapsPerPass taps x 4 outputs in registers, half the
// register file. They are kept per kLanes channels in memory between output rows, so each
// input row is read from memory once (per pass) and from L1 once per kLanes channels.
inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  const int64_t taps = s.k_h * s.k_w, blocks = s.in_c / kLanes;
  std::fill(dw, dw + taps * s.in_c * s.out_c, 0.0f);
  PaddedRows padded(s);
  struct alignas(64) Sums {
    Vec per_tap[kTapsPerPass][kMaxOutChannels];
  };
  std::vector<Sums> sums(blocks);
  alignas(64) float lanes[kLanes];
  for (int64_t first_tap = 0; first_tap < taps; first_tap += kTapsPerPass) {
    const int64_t pass_taps = std::min<int64_t>(kTapsPerPass, taps - first_tap);
    int64_t offsets[kTapsPerPass] = {}, tap_rows[kTapsPerPass] = {};
    for (int64_t t = 0; t < pass_taps; ++t) {
      tap_rows[t] = (first_tap + t) / s.k_w;
      offsets[t] = (first_tap + t) % s.k_w * s.in_c;
    }
    for (Sums& block : sums)
      for (auto& per_tap : block.per_tap)
        for (auto& a : per_tap) a = Zero();
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t i = 0; i < s.out_h; ++i) {
        const float* const* rows = padded.Load(x, n, i);
        const float* g_start = dy + (n * s.out_h + i) * s.out_w * s.out_c;
        for (int64_t b = 0; b < blocks; ++b) {
          Vec acc[kTapsPerPass][kMaxOutChannels];
          const float* pixel[kTapsPerPass];
#pragma GCC unroll 4
          for (int t = 0; t < kTapsPerPass; ++t) {
            pixel[t] = rows[tap_rows[t]] + offsets[t] + b * kLanes;
#pragma GCC unroll 4
            for (int o = 0; o < kMaxOutChannels; ++o) acc[t][o] = sums[b].per_tap[t][o];
          }
          const float* g_row = g_start;
          for (int64_t j = 0; j < s.out_w; ++j, g_row += s.out_c) {
            Vec g[kMaxOutChannels];
#pragma GCC unroll 4
            for (int o = 0; o < kMaxOutChannels; ++o) g[o] = o < s.out_c ? Broadcast(g_row[o]) : Zero();
#pragma GCC unroll 4
            for (int t = 0; t < kTapsPerPass; ++t) {
              const Vec v = Load(pixel[t] + j * s.in_c);  // taps past pass_taps add to unused sums
#pragma GCC unroll 4
              for (int o = 0; o < kMaxOutChannels; ++o) acc[t][o] = Fma(v, g[o], acc[t][o]);
            }
          }
#pragma GCC unroll 4
          for (int t = 0; t < kTapsPerPass; ++t)
#pragma GCC unroll 4
            for (int o = 0; o < kMaxOutChannels; ++o) sums[b].per_tap[t][o] = acc[t][o];
        }
      }
    }
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t t = 0; t < pass_taps; ++t) {
        for (int64_t o = 0; o < s.out_c; ++o) {
          Store(lanes, sums[b].per_tap[t][o]);
          for (int l = 0; l < kLanes; ++l) dw[((first_tap + t) * s.in_c + b * kLanes + l) * s.out_c + o] = lanes[l];
        }
      }
    }
  }
}
