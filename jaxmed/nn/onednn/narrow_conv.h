// Stride-1 float32 convolutions with at most four output channels, forward and
// backward-weights, in AVX-512: the sub-pixel form of a 1-channel image layer.
//
// Why: the generator's last up-sampling layer (32 -> 1 channel) runs as a 2x2
// stride-1 convolution to 4 channels (one per output phase; conv2d.cc's
// RunSubpixel), and so does the discriminator's input gradient. oneDNN's kernels are
// blocked over output channels in 16s, so with 4 they compute at 35-55 GFLOP/s,
// a quarter of its rate on the other layers. Here the vectors run over input
// channels instead (16 per register), the few output channels are unrolled, and
// the forward pass ends each pixel with one 4-way horizontal sum. Measured on one
// core at the dcgan128 shape (16 images of 64x64x32 -> 65x65x4): forward 0.75-0.85
// against oneDNN's 1.6-2.1 ms, weight gradient 0.65-0.75 against 1.3-1.8 ms.
//
// ForwardSubpixel is the forward pass with each pixel's four outputs stored straight into
// the two rows and columns of the up-sampled image they are phases of.
//
// Layouts are those of conv2d.cc: activations NHWC, kernels HWIO, dense. Input
// rows are first copied with their padding filled in, so every pixel runs the same
// loop.

#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace narrow_conv {

constexpr int kMaxOutChannels = 4;
constexpr int kLanes = 16;

// Shape of one call: batch, input H/W/C, output H/W/C, kernel H/W, low padding (stride 1).
struct Shape {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, pad_top, pad_left;
};

// A float buffer whose data starts on a cache line: vector loads that straddle two lines cost two.
class AlignedFloats {
 public:
  explicit AlignedFloats(int64_t size) : storage_(size + kLanes, 0.0f) {}
  float* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    return storage_.data() + (-address / sizeof(float)) % kLanes;
  }

 private:
  std::vector<float> storage_;
};

inline bool Supported(const Shape& s) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 && s.out_c >= 1 && s.out_c <= kMaxOutChannels && s.in_c % kLanes == 0;
}

// The k_h input rows under one output row, each with its padding columns filled in, so
// the pixel loops below never test bounds. Rows above or below the image are zeros. Each
// image row is copied once: consecutive output rows share k_h - 1 of their input rows.
class PaddedRows {
 public:
  explicit PaddedRows(const Shape& s)
      : s_(s), width_(s.out_w + s.k_w - 1), buffer_((s.k_h + 1) * width_ * s.in_c), held_(s.k_h, {-1, 0}) {}

  // The rows of output row i of image n (k_h pointers).
  const float* const* Load(const float* x, int64_t n, int64_t i) {
    rows_.resize(s_.k_h);
    for (int64_t di = 0; di < s_.k_h; ++di) {
      const int64_t r = i + di - s_.pad_top;
      if (r < 0 || r >= s_.in_h) {
        rows_[di] = buffer_.data();  // slot 0 stays all zeros
        continue;
      }
      const int64_t slot = r % s_.k_h;
      float* row = buffer_.data() + (slot + 1) * width_ * s_.in_c;
      if (held_[slot] != std::make_pair(n, r)) {
        Copy(x + (n * s_.in_h + r) * s_.in_w * s_.in_c, row);
        held_[slot] = {n, r};
      }
      rows_[di] = row;
    }
    return rows_.data();
  }

 private:
  // Columns [pad_left, pad_left + in_w) of the padded row are the image row; the rest
  // (left and right padding, or the part of the image a negative padding crops) zeros.
  void Copy(const float* source, float* row) const {
    const int64_t first = std::min(width_, std::max<int64_t>(0, s_.pad_left));
    const int64_t end = std::max(first, std::min(width_, s_.pad_left + s_.in_w));
    std::fill(row, row + first * s_.in_c, 0.0f);
    std::copy(source + (first - s_.pad_left) * s_.in_c, source + (end - s_.pad_left) * s_.in_c,
              row + first * s_.in_c);
    std::fill(row + end * s_.in_c, row + width_ * s_.in_c, 0.0f);
  }

  const Shape& s_;
  const int64_t width_;
  AlignedFloats buffer_;
  std::vector<std::pair<int64_t, int64_t>> held_;  // (image, row) in each slot
  std::vector<const float*> rows_;
};

// The four sums of a, b, c, d's lanes, in that order.
__attribute__((target("avx512f"))) inline __m128 FourSums(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 quads = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xEE));
  const __m256 halves = _mm256_add_ps(_mm512_castps512_ps256(quads),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(quads), 1)));
  return _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
}

// kPixels adjacent output pixels from j on: independent sums keep both FMA units busy
// (one pixel alone is four chains of dependent FMAs) and share each weight load.
// kBlocks = in_c / 16 and kKernel = k_h = k_w when known at compile time, else 0 (read from s).
// Each pixel's four sums (outputs 0-3) go to sink(column, sums).
template <int kPixels, int kBlocks, int kKernel, typename Sink>
__attribute__((target("avx512f"))) inline void ForwardPixels(const Shape& s, const float* const* rows,
                                                             const float* weights, int64_t j, const Sink& sink) {
  const int64_t in_c = kBlocks ? kBlocks * kLanes : s.in_c, blocks = in_c / kLanes;
  const int64_t k_h = kKernel ? kKernel : s.k_h, k_w = kKernel ? kKernel : s.k_w;
  __m512 acc[kPixels][kMaxOutChannels];
#pragma GCC unroll 16
  for (int p = 0; p < kPixels; ++p)
#pragma GCC unroll 4
    for (int o = 0; o < kMaxOutChannels; ++o) acc[p][o] = _mm512_setzero_ps();
  const float* w_tap = weights;
  for (int64_t di = 0; di < k_h; ++di) {
    for (int64_t dj = 0; dj < k_w; ++dj, w_tap += kMaxOutChannels * in_c) {
      const float* pixel = rows[di] + (j + dj) * in_c;
      for (int64_t b = 0; b < blocks; ++b) {
        __m512 w[kMaxOutChannels];
#pragma GCC unroll 4
        for (int o = 0; o < kMaxOutChannels; ++o) w[o] = _mm512_loadu_ps(w_tap + o * in_c + b * kLanes);
#pragma GCC unroll 16
        for (int p = 0; p < kPixels; ++p) {
          const __m512 v = _mm512_loadu_ps(pixel + p * in_c + b * kLanes);
#pragma GCC unroll 4
          for (int o = 0; o < kMaxOutChannels; ++o) acc[p][o] = _mm512_fmadd_ps(v, w[o], acc[p][o]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < kPixels; ++p) sink(j + p, FourSums(acc[p][0], acc[p][1], acc[p][2], acc[p][3]));
}

// One output row, four pixels at a time.
template <int kBlocks, int kKernel, typename Sink>
__attribute__((target("avx512f"))) void ForwardRow(const Shape& s, const float* const* rows, const float* weights,
                                                   const Sink& sink) {
  int64_t j = 0;
  for (; j + 4 <= s.out_w; j += 4) ForwardPixels<4, kBlocks, kKernel>(s, rows, weights, j, sink);
  for (; j < s.out_w; ++j) ForwardPixels<1, kBlocks, kKernel>(s, rows, weights, j, sink);
}

// conv(x, w) row by row: row_sink(n, i) gives the sink of output row i of image n. w is
// HWIO with out_c <= 4 outputs.
template <typename RowSink>
__attribute__((target("avx512f"))) void ForwardRows(const Shape& s, const float* x, const float* w,
                                                    const RowSink& row_sink) {
  const int64_t taps = s.k_h * s.k_w;
  // Weights as [tap][output (padded to 4 with zeros)][input channel]: each vector load is 16 inputs.
  AlignedFloats aligned_weights(taps * kMaxOutChannels * s.in_c);
  float* weights = aligned_weights.data();
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < s.in_c; ++c)
      for (int64_t o = 0; o < s.out_c; ++o)
        weights[(t * kMaxOutChannels + o) * s.in_c + c] = w[(t * s.in_c + c) * s.out_c + o];
  // The sub-pixel layers (2x2 kernels, 32 inputs) with their sizes as constants (15-20 % faster).
  const bool subpixel = s.k_h == 2 && s.k_w == 2 && s.in_c == 2 * kLanes;
  PaddedRows padded(s);
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t i = 0; i < s.out_h; ++i) {
      const auto sink = row_sink(n, i);
      if (subpixel) {
        ForwardRow<2, 2>(s, padded.Load(x, n, i), weights, sink);
      } else {
        ForwardRow<0, 0>(s, padded.Load(x, n, i), weights, sink);
      }
    }
  }
}

// y = conv(x, w), NHWC.
__attribute__((target("avx512f"))) inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
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
__attribute__((target("avx512f"))) inline void ForwardSubpixel(const Shape& s, const float* x, const float* w,
                                                                float* result, int64_t height, int64_t width) {
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
// Sums: 16 input channels x 4 taps x 4 outputs in registers, half the register file.
// They are kept per 16 channels in memory between output rows, so each input row is
// read from memory once (per 4 taps) and from L1 once per 16 channels.
__attribute__((target("avx512f"))) inline void BackwardWeights(const Shape& s, const float* x, const float* dy,
                                                                float* dw) {
  constexpr int kTapsPerPass = 4;
  const int64_t taps = s.k_h * s.k_w, blocks = s.in_c / kLanes;
  std::fill(dw, dw + taps * s.in_c * s.out_c, 0.0f);
  PaddedRows padded(s);
  struct alignas(64) Sums {
    __m512 per_tap[kTapsPerPass][kMaxOutChannels];
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
        for (auto& a : per_tap) a = _mm512_setzero_ps();
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t i = 0; i < s.out_h; ++i) {
        const float* const* rows = padded.Load(x, n, i);
        const float* g_start = dy + (n * s.out_h + i) * s.out_w * s.out_c;
        for (int64_t b = 0; b < blocks; ++b) {
          __m512 acc[kTapsPerPass][kMaxOutChannels];
          const float* pixel[kTapsPerPass];
#pragma GCC unroll 4
          for (int t = 0; t < kTapsPerPass; ++t) {
            pixel[t] = rows[tap_rows[t]] + offsets[t] + b * kLanes;
#pragma GCC unroll 4
            for (int o = 0; o < kMaxOutChannels; ++o) acc[t][o] = sums[b].per_tap[t][o];
          }
          const float* g_row = g_start;
          for (int64_t j = 0; j < s.out_w; ++j, g_row += s.out_c) {
            __m512 g[kMaxOutChannels];
#pragma GCC unroll 4
            for (int o = 0; o < kMaxOutChannels; ++o)
              g[o] = o < s.out_c ? _mm512_set1_ps(g_row[o]) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (int t = 0; t < kTapsPerPass; ++t) {
              const __m512 v = _mm512_loadu_ps(pixel[t] + j * s.in_c);  // taps past pass_taps add to unused sums
#pragma GCC unroll 4
              for (int o = 0; o < kMaxOutChannels; ++o) acc[t][o] = _mm512_fmadd_ps(v, g[o], acc[t][o]);
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
          _mm512_store_ps(lanes, sums[b].per_tap[t][o]);
          for (int l = 0; l < kLanes; ++l) dw[((first_tap + t) * s.in_c + b * kLanes + l) * s.out_c + o] = lanes[l];
        }
      }
    }
  }
}

}  // namespace narrow_conv
