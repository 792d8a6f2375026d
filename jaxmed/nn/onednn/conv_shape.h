// The geometry of one convolution call as jaxmed's own kernels (narrow_conv.h,
// weight_gradient.h) take it; conv2d.cc fills it from oneDNN's description of the call.
// Also the one row copy both kernels pad their inputs with.

#pragma once

#include <algorithm>
#include <cstdint>

namespace jaxmed {

// Batch, input H/W/C, output H/W/C, kernel H/W, strides, low padding. Activations are NHWC,
// kernels HWIO, both dense.
struct ConvShape {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h, stride_w, pad_top, pad_left;
};

// One input row with its left and right padding: columns [pad_left, pad_left + in_w) of the
// `width` pixels at `row` are the image row at `source`; the rest (padding, or the columns of
// a row that a negative padding crops) zeros. Pixels are in_c floats.
inline void CopyPaddedRow(const ConvShape& s, const float* source, int64_t width, float* row) {
  const int64_t first = std::min(width, std::max<int64_t>(0, s.pad_left));
  const int64_t end = std::max(first, std::min(width, s.pad_left + s.in_w));
  std::fill(row, row + first * s.in_c, 0.0f);
  std::copy(source + (first - s.pad_left) * s.in_c, source + (end - s.pad_left) * s.in_c, row + first * s.in_c);
  std::fill(row + end * s.in_c, row + width * s.in_c, 0.0f);
}

}  // namespace jaxmed
