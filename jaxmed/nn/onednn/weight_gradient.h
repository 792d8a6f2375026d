// The weight gradient of a float32 convolution as one small matrix product per kernel
// tap, in AVX2: where oneDNN's AVX2 kernel for it is slow.
//
// Why: on an AVX2-only CPU oneDNN runs the dcgan128 weight gradients with its older
// "jit:avx2" kernel well below the rate of its forward and input-gradient kernels (far
// below for the 1-channel image layer), and its GEMM-based kernel is slower still; this
// one is faster. The 4x4 stride-2 layers go to winograd.h, faster again; this kernel
// serves the other shapes (the classifiers' 3x3 layers, the image layers).
//
// dw[kh, kw, c, o] = sum over images n and output pixels (i, j) of
//   x[n, i * stride_h + kh - pad_top, j * stride_w + kw - pad_left, c] * dy[n, i, j, o],
// for each tap (kh, kw) a (C x P) by (P x O) product over the P output pixels. Two kernels:
//
// - Inputs in 4s (BackwardWeights): registers hold a tile of 4 input channels by 24 (or 16,
//   8) output channels, 12 sums; each output pixel adds one dy segment (3 vector loads)
//   times 4 broadcast inputs. Each image is first packed by tile (x as [4-channel
//   tile][pixel][4], dy as [24-channel tile][pixel][24]), so a tile's loads are contiguous
//   rather than one cache line per pixel, and its pixels go by blocks of output rows (the dy
//   tile's block within 16 KB, half of L1), which every input tile passes over while it is
//   in L1. Sums live in dw between blocks. Pixels whose tap falls in the padding are
//   skipped, not multiplied by zeros.
// - One input channel (BackwardWeightsOneChannel: the image layers, x 128x128x1 under dy
//   64x64x32): registers hold 4 taps of one kernel row by 16 output channels, 8 sums; each
//   output pixel adds its dy segment (2 loads) times 4 broadcast image pixels. dy goes row
//   by row (8 KB, kept in L1 for its 8 passes: 4 kernel rows by 2 channel halves) while the
//   next row is prefetched in software, a part per pass: with the hardware prefetcher
//   alone, contended memory is the bottleneck. Tiles of 4 taps by 3 vectors (24 outputs,
//   then 8), or of 2 taps by 4 vectors, were slower.
//
// Layouts are those of conv2d.cc: x and dy NHWC, dw HWIO, dense, float32.

#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "conv_shape.h"

namespace weight_gradient {

constexpr int kChannelsPerTile = 4;  // input channels (broadcast)
constexpr int kLanes = 8;
constexpr int64_t kLineBytes = 64;
constexpr int64_t kBlockBytes = 16 * 1024;  // half of L1; smaller blocks were slower, larger no faster

using Shape = jaxmed::ConvShape;

// Whether a kernel takes these channel counts; the CPU must have AVX2 and FMA (conv2d.cc
// calls them only where jaxmed::simd::BestIsa() is AVX2).
inline bool Supported(const Shape& s) { return s.in_c % kChannelsPerTile == 0 && s.out_c % kLanes == 0; }
inline bool SupportedOneChannel(const Shape& s) { return s.in_c == 1 && s.out_c % kLanes == 0; }

// The output positions q in [0, out) whose input position q * stride + tap - pad lies in [0, in).
inline std::pair<int64_t, int64_t> ValidRange(int64_t out, int64_t in, int64_t stride, int64_t tap, int64_t pad) {
  const int64_t offset = tap - pad;  // input = q * stride + offset
  const int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t end = in - offset <= 0 ? 0 : (in - offset - 1) / stride + 1;
  return {first, std::max(first, std::min(out, end))};
}

// The kernels, compiled for AVX2 (callers check Supported and the CPU first).
#pragma GCC push_options
#pragma GCC target("avx2,fma")

// A register tile of sums: kRows rows of dw, `stride` floats apart (input channels, or taps of
// the one channel), by kVectors * 8 output channels. Each output pixel adds its kRows inputs,
// broadcast, times its kVectors dy vectors.
template <int kRows, int kVectors>
struct Tile {
  __m256 acc[kRows][kVectors];

  Tile(const float* sums, int64_t stride) {
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_loadu_ps(sums + r * stride + v * kLanes);
  }

  void Store(float* sums, int64_t stride) const {
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < kVectors; ++v) _mm256_storeu_ps(sums + r * stride + v * kLanes, acc[r][v]);
  }

  // Adds `pixels` pixels, the n-th with inputs at x + n * x_step and dy at dy + n * dy_step,
  // prefetching one cache line of [prefetch, prefetch_end) per pixel.
  void Add(const float* x, int64_t x_step, const float* dy, int64_t dy_step, int64_t pixels,
           const char* prefetch = nullptr, const char* prefetch_end = nullptr) {
    for (int64_t n = 0; n < pixels; ++n, x += x_step, dy += dy_step) {
      if (prefetch < prefetch_end) {
        _mm_prefetch(prefetch, _MM_HINT_T0);
        prefetch += kLineBytes;
      }
      __m256 d[kVectors];
#pragma GCC unroll 3
      for (int v = 0; v < kVectors; ++v) d[v] = _mm256_loadu_ps(dy + v * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < kRows; ++r) {
        const __m256 b = _mm256_broadcast_ss(x + r);
#pragma GCC unroll 3
        for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_fmadd_ps(b, d[v], acc[r][v]);
      }
    }
  }
};

// Adds one tile of tap (kh, kw): 4 input channels (packed x: [row][column][4]) by
// kVectors * 8 output channels (packed dy: [row][column][kVectors * 8]), over output rows
// [row_begin, row_end) and columns [j_first, j_end), to sums (a row stride of out_c).
template <int kVectors>
inline void AddTile(const Shape& s, const float* x_tile, const float* dy_tile, int64_t row_begin, int64_t row_end,
                    int64_t j_first, int64_t j_end, int64_t kh, int64_t kw, float* sums) {
  constexpr int kWidth = kVectors * kLanes;
  Tile<kChannelsPerTile, kVectors> tile(sums, s.out_c);
  for (int64_t i = row_begin; i < row_end; ++i) {
    const int64_t r = i * s.stride_h + kh - s.pad_top;
    tile.Add(x_tile + (r * s.in_w + j_first * s.stride_w + kw - s.pad_left) * kChannelsPerTile,
             s.stride_w * kChannelsPerTile, dy_tile + (i * s.out_w + j_first) * kWidth, kWidth, j_end - j_first);
  }
  tile.Store(sums, s.out_c);
}

// dw = d conv / dw summed over the batch, written (not added), HWIO float32 (call only if Supported).
inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  std::fill(dw, dw + s.k_h * s.k_w * s.in_c * s.out_c, 0.0f);
  constexpr int64_t kTileChannels = 3 * kLanes;
  const int64_t x_pixels = s.in_h * s.in_w, dy_pixels = s.out_h * s.out_w;
  std::vector<float> x_packed(x_pixels * s.in_c), dy_packed(dy_pixels * s.out_c);
  // Output-channel tiles: (first channel, width) of 24s, then one of 16 or 8.
  std::vector<std::pair<int64_t, int64_t>> o_tiles;
  for (int64_t o = 0; o < s.out_c;) {
    const int64_t width = std::min(kTileChannels, s.out_c - o);
    o_tiles.push_back({o, width});
    o += width;
  }
  const int64_t block_rows = std::max<int64_t>(1, kBlockBytes / (4 * s.out_w * kTileChannels));
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* x_image = x + n * x_pixels * s.in_c;
    const float* dy_image = dy + n * dy_pixels * s.out_c;
    // Packed pixel by pixel, in one pass over the image: a pass per tile read a 64x64x32
    // image 8 times, and it and its packed copy (512 KB each) overflow a 512 KB L2.
    for (int64_t p = 0; p < x_pixels; ++p)
      for (int64_t c = 0; c < s.in_c; c += kChannelsPerTile)
        std::copy(x_image + p * s.in_c + c, x_image + p * s.in_c + c + kChannelsPerTile,
                  x_packed.data() + (c * x_pixels + p * kChannelsPerTile));
    for (int64_t p = 0; p < dy_pixels; ++p)
      for (const auto& [o, width] : o_tiles)
        std::copy(dy_image + p * s.out_c + o, dy_image + p * s.out_c + o + width,
                  dy_packed.data() + o * dy_pixels + p * width);
    for (int64_t row = 0; row < s.out_h; row += block_rows) {
      const int64_t row_end = std::min(s.out_h, row + block_rows);
      for (int64_t kh = 0; kh < s.k_h; ++kh) {
        const auto [i_first, i_end] = ValidRange(s.out_h, s.in_h, s.stride_h, kh, s.pad_top);
        const int64_t first_row = std::max(row, i_first), end_row = std::min(row_end, i_end);
        if (first_row >= end_row) continue;
        for (int64_t kw = 0; kw < s.k_w; ++kw) {
          const auto [j_first, j_end] = ValidRange(s.out_w, s.in_w, s.stride_w, kw, s.pad_left);
          if (j_first >= j_end) continue;
          for (const auto& [o, width] : o_tiles) {
            const float* dy_tile = dy_packed.data() + o * dy_pixels;
            for (int64_t c = 0; c < s.in_c; c += kChannelsPerTile) {
              const float* x_tile = x_packed.data() + c * x_pixels;
              float* sums = dw + ((kh * s.k_w + kw) * s.in_c + c) * s.out_c + o;
              if (width == 3 * kLanes) {
                AddTile<3>(s, x_tile, dy_tile, first_row, end_row, j_first, j_end, kh, kw, sums);
              } else if (width == 2 * kLanes) {
                AddTile<2>(s, x_tile, dy_tile, first_row, end_row, j_first, j_end, kh, kw, sums);
              } else {
                AddTile<1>(s, x_tile, dy_tile, first_row, end_row, j_first, j_end, kh, kw, sums);
              }
            }
          }
        }
      }
    }
  }
}

// One input channel: see the file comment. kTapsPerTile taps of one kernel row.
constexpr int kTapsPerTile = 4;
constexpr int kVectorsPerTile = 2;

// One image with its padding filled in (zeros), so every tap of every output pixel lies inside.
class PaddedImage {
 public:
  explicit PaddedImage(const Shape& s)
      : s_(s), height_((s.out_h - 1) * s.stride_h + s.k_h), width_((s.out_w - 1) * s.stride_w + s.k_w),
        data_(height_ * width_) {}
  int64_t width() const { return width_; }

  const float* Fill(const float* image) {
    for (int64_t r = 0; r < height_; ++r) {
      float* row = data_.data() + r * width_;
      const int64_t source = r - s_.pad_top;
      if (source >= 0 && source < s_.in_h) {
        jaxmed::CopyPaddedRow(s_, image + source * s_.in_w, width_, row);
      } else {
        std::fill(row, row + width_, 0.0f);
      }
    }
    return data_.data();
  }

 private:
  const Shape& s_;
  const int64_t height_, width_;
  std::vector<float> data_;
};

// Adds taps (kh, kw .. kw + kTaps) by kVectors * 8 output channels of output row i to sums
// (dw at the first tap and channel), prefetching [prefetch, prefetch_end) on the way.
template <int kTaps, int kVectors>
inline void AddRowTaps(const Shape& s, const float* image, int64_t width, const float* dy_row, int64_t i, int64_t kh,
                       int64_t kw, float* sums, const char* prefetch, const char* prefetch_end) {
  Tile<kTaps, kVectors> tile(sums, s.out_c);
  tile.Add(image + (i * s.stride_h + kh) * width + kw, s.stride_w, dy_row, s.out_c, s.out_w, prefetch, prefetch_end);
  tile.Store(sums, s.out_c);
}

template <int kVectors>
inline void AddRowTaps(int taps, const Shape& s, const float* image, int64_t width, const float* dy_row, int64_t i,
                       int64_t kh, int64_t kw, float* sums, const char* prefetch, const char* prefetch_end) {
  constexpr auto kernels = std::array{AddRowTaps<1, kVectors>, AddRowTaps<2, kVectors>, AddRowTaps<3, kVectors>,
                                      AddRowTaps<4, kVectors>};
  kernels[taps - 1](s, image, width, dy_row, i, kh, kw, sums, prefetch, prefetch_end);
}

// dw for one input channel, written (not added), HWIO float32 (call only if SupportedOneChannel).
inline void BackwardWeightsOneChannel(const Shape& s, const float* x, const float* dy, float* dw) {
  std::fill(dw, dw + s.k_h * s.k_w * s.out_c, 0.0f);
  constexpr int64_t kTileChannels = kVectorsPerTile * kLanes;
  const int64_t row_bytes = s.out_w * s.out_c * sizeof(float);
  const int64_t passes =
      s.k_h * ((s.k_w + kTapsPerTile - 1) / kTapsPerTile) * ((s.out_c + kTileChannels - 1) / kTileChannels);
  const int64_t prefetch_part = (row_bytes / passes + kLineBytes - 1) / kLineBytes * kLineBytes;
  PaddedImage padded(s);
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* image = padded.Fill(x + n * s.in_h * s.in_w);
    for (int64_t i = 0; i < s.out_h; ++i) {
      const float* dy_row = dy + (n * s.out_h + i) * s.out_w * s.out_c;
      // The next dy row, a part per pass (none past the end).
      const char* next = reinterpret_cast<const char*>(dy_row + s.out_w * s.out_c);
      const int64_t next_bytes = n + 1 < s.batch || i + 1 < s.out_h ? row_bytes : 0;
      int64_t pass = 0;
      for (int64_t kh = 0; kh < s.k_h; ++kh) {
        for (int64_t kw = 0; kw < s.k_w; kw += kTapsPerTile) {
          const int taps = static_cast<int>(std::min<int64_t>(kTapsPerTile, s.k_w - kw));
          for (int64_t o = 0; o < s.out_c; ++pass) {
            const char* prefetch = next + std::min(next_bytes, pass * prefetch_part);
            const char* prefetch_end = next + std::min(next_bytes, (pass + 1) * prefetch_part);
            float* sums = dw + (kh * s.k_w + kw) * s.out_c + o;
            if (s.out_c - o >= kTileChannels) {
              AddRowTaps<kVectorsPerTile>(taps, s, image, padded.width(), dy_row + o, i, kh, kw, sums, prefetch,
                                          prefetch_end);
              o += kTileChannels;
            } else {
              AddRowTaps<1>(taps, s, image, padded.width(), dy_row + o, i, kh, kw, sums, prefetch, prefetch_end);
              o += kLanes;
            }
          }
        }
      }
    }
  }
}

#pragma GCC pop_options

}  // namespace weight_gradient
