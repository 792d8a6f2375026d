// Stride-1 float32 convolutions with at most four output channels, forward and
// backward-weights, in AVX-512 or AVX2: the sub-pixel form of a 1-channel image layer.
//
// Why: the generator's last up-sampling layer (32 -> 1 channel) runs as a 2x2
// stride-1 convolution to 4 channels (one per output phase; conv2d.cc's
// RunSubpixel), and so does the discriminator's input gradient. oneDNN's kernels are
// blocked over output channels in 16s (8s in AVX2), so with 4 they compute at a quarter
// of their rate on the other layers. Here the vectors run over input channels instead
// (16 or 8 per register), the few output channels are unrolled, and the forward pass ends
// each pixel with one 4-way horizontal sum; that runs these layers about twice as fast.
//
// The kernels are written once (narrow_conv_simd.h, in simd.h's vocabulary) and compiled
// twice, for AVX-512 and for AVX2 with FMA, each in its own namespace; the functions at the end
// of this file run the widest one this CPU has (and ONEDNN_MAX_CPU_ISA allows).
//
// ForwardSubpixel is the forward pass with each pixel's four outputs stored straight into
// the two rows and columns of the up-sampled image they are phases of.
//
// Layouts are those of conv2d.cc: activations NHWC, kernels HWIO, dense. Input
// rows are first copied with their padding filled in, so every pixel runs the same
// loop.

#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "conv_shape.h"
#include "simd.h"

namespace narrow_conv {

constexpr int kMaxOutChannels = 4;
constexpr int kCacheLineFloats = 16;

using Shape = jaxmed::ConvShape;  // stride 1 only

// A float buffer whose data starts on a cache line: vector loads that straddle two lines cost two.
class AlignedFloats {
 public:
  explicit AlignedFloats(int64_t size) : storage_(size + kCacheLineFloats, 0.0f) {}
  float* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    return storage_.data() + (-address / sizeof(float)) % kCacheLineFloats;
  }

 private:
  std::vector<float> storage_;
};

// The k_h input rows under one output row, each with its padding columns filled in, so
// the pixel loops below never test bounds. Rows above or below the image are zeros. Each
// image row is copied once: consecutive output rows share k_h - 1 of their input rows.
class PaddedRows {
 public:
  explicit PaddedRows(const Shape& s)
      : s_(s), width_(s.out_w + s.k_w - 1), buffer_((s.k_h + 1) * width_ * s.in_c), held_(s.k_h, {-1, 0}) {}

  // The image row that output row i + 1 of image n adds to those of row i (its last row, or
  // the next image's first), null if none: to prefetch while row i runs.
  const float* Next(const float* x, int64_t n, int64_t i) const {
    const int64_t r = i + s_.k_h - s_.pad_top;
    if (r >= 0 && r < s_.in_h) return x + (n * s_.in_h + r) * s_.in_w * s_.in_c;
    return r >= s_.in_h && n + 1 < s_.batch ? x + (n + 1) * s_.in_h * s_.in_w * s_.in_c : nullptr;
  }

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
        jaxmed::CopyPaddedRow(s_, x + (n * s_.in_h + r) * s_.in_w * s_.in_c, width_, row);
        held_[slot] = {n, r};
      }
      rows_[di] = row;
    }
    return rows_.data();
  }

 private:
  const Shape& s_;
  const int64_t width_;
  AlignedFloats buffer_;
  std::vector<std::pair<int64_t, int64_t>> held_;  // (image, row) in each slot
  std::vector<const float*> rows_;
};

}  // namespace narrow_conv

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace narrow_conv::avx512 {

using namespace jaxmed::simd::avx512;
constexpr int kPixels = 4;       // 16 sums + 4 inputs + 1 weight of the 32 registers
constexpr int kTapsPerPass = 4;  // 16 sums + 4 gradients + 1 input
constexpr int kUnrollBlocks = 2;  // the sub-pixel layer's 32 channels, as -O3 unrolled them by itself

#include "narrow_conv_simd.h"

}  // namespace narrow_conv::avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace narrow_conv::avx2 {

using namespace jaxmed::simd::avx2;
constexpr int kPixels = 3;       // 12 sums + 3 inputs + 1 weight of the 16 registers
constexpr int kTapsPerPass = 2;  // 8 sums + 4 gradients + 1 input
// The forward's channel blocks stay a loop: GCC -O3 unrolled them fully and spilled sums.
constexpr int kUnrollBlocks = 1;

#include "narrow_conv_simd.h"

}  // namespace narrow_conv::avx2
#pragma GCC pop_options

namespace narrow_conv {

using jaxmed::simd::BestIsa;
using jaxmed::simd::Isa;

inline bool Supported(const Shape& s) {
  const int lanes = BestIsa() == Isa::kAvx512 ? avx512::kLanes : avx2::kLanes;
  return BestIsa() != Isa::kNone && s.stride_h == 1 && s.stride_w == 1 && s.out_c >= 1 &&
         s.out_c <= kMaxOutChannels && s.in_c % lanes == 0;
}

// The kernels of narrow_conv_simd.h in the widest instruction set (call only if Supported).
inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
  BestIsa() == Isa::kAvx512 ? avx512::Forward(s, x, w, y) : avx2::Forward(s, x, w, y);
}

inline void ForwardSubpixel(const Shape& s, const float* x, const float* w, float* result, int64_t height,
                            int64_t width) {
  BestIsa() == Isa::kAvx512 ? avx512::ForwardSubpixel(s, x, w, result, height, width)
                            : avx2::ForwardSubpixel(s, x, w, result, height, width);
}

inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  BestIsa() == Isa::kAvx512 ? avx512::BackwardWeights(s, x, dy, dw) : avx2::BackwardWeights(s, x, dy, dw);
}

}  // namespace narrow_conv
