// Spatial max pooling of NHWC float32 images that remembers where each maximum was, and its
// gradient, which sends each output's gradient back to that position.
//
// Why: XLA:CPU differentiates `lax.reduce_window` through `select_and_scatter` at about 1 % of
// memory bandwidth, and the elementwise form in `jaxmed/nn/pooling.py` (a chain of maxima and
// selects) re-reads the input once per window position in the backward pass. Here the forward
// pass writes the maximum and a one-byte window position per output, and the backward pass
// reads dy and those positions once and writes dx once.
//
// Ties go to the first position in row-major window order, and padded positions (outside the
// image) never win; every window holds at least one image pixel (pads < window).

#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

namespace pooling {

struct Window {
  int64_t height, width, channels;      // input image
  int64_t out_height, out_width;        // output image
  int64_t window_h, window_w, stride_h, stride_w, pad_top, pad_left;

  // Floats per input and per output image.
  int64_t InImage() const { return height * width * channels; }
  int64_t OutImage() const { return out_height * out_width * channels; }

  // Calls visit(pixel, position) for each image pixel (its index in the image) under output
  // (i, j)'s window, in row-major window order, with its position in the window.
  template <typename Visit>
  void ForEachPixel(int64_t i, int64_t j, Visit&& visit) const {
    for (int64_t r = 0; r < window_h; ++r) {
      const int64_t row = i * stride_h - pad_top + r;
      if (row < 0 || row >= height) continue;
      for (int64_t s = 0; s < window_w; ++s) {
        const int64_t col = j * stride_w - pad_left + s;
        if (col >= 0 && col < width) visit(row * width + col, r * window_w + s);
      }
    }
  }
};

// Forward pass of `images` images: y[b, i, j, c] = max over the window; where[b, i, j, c] = its
// position (row * window_w + column) in the window. Positions are tracked as floats, the width
// of the comparisons, so that the channel loop vectorises; `scratch` holds `channels` of them.
// Compiled for AVX-512, AVX2 and baseline x86-64.
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) inline void MaxPoolForward(
    const Window& w, int64_t images, const float* __restrict x, float* __restrict y, uint8_t* __restrict where,
    float* __restrict scratch) {
  const int64_t c_count = w.channels;
  for (int64_t b = 0; b < images; ++b) {
    const float* image = x + b * w.InImage();
    for (int64_t i = 0; i < w.out_height; ++i) {
      for (int64_t j = 0; j < w.out_width; ++j) {
        float* best = y + ((b * w.out_height + i) * w.out_width + j) * c_count;
        uint8_t* position = where + ((b * w.out_height + i) * w.out_width + j) * c_count;
        for (int64_t c = 0; c < c_count; ++c) best[c] = -std::numeric_limits<float>::infinity(), scratch[c] = 0.0f;
        w.ForEachPixel(i, j, [&](int64_t index, int64_t window_position) {
          const float* pixel = image + index * c_count;
          const float here = static_cast<float>(window_position);
          for (int64_t c = 0; c < c_count; ++c) {
            const bool larger = pixel[c] > best[c];
            best[c] = larger ? pixel[c] : best[c];
            scratch[c] = larger ? here : scratch[c];
          }
        });
        for (int64_t c = 0; c < c_count; ++c) position[c] = static_cast<uint8_t>(scratch[c]);
      }
    }
  }
}

// Backward pass of `images` images: dx = 0, then each dy[b, i, j, c] added at the input pixel
// `where` names (overlapping windows add up).
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) inline void MaxPoolBackward(
    const Window& w, int64_t images, const float* __restrict dy, const uint8_t* __restrict where,
    float* __restrict dx) {
  const int64_t c_count = w.channels;
  std::memset(dx, 0, sizeof(float) * images * w.InImage());
  for (int64_t b = 0; b < images; ++b) {
    float* image = dx + b * w.InImage();
    for (int64_t i = 0; i < w.out_height; ++i) {
      for (int64_t j = 0; j < w.out_width; ++j) {
        const int64_t offset = ((b * w.out_height + i) * w.out_width + j) * c_count;
        const float* gradient = dy + offset;
        const uint8_t* position = where + offset;
        w.ForEachPixel(i, j, [&](int64_t index, int64_t window_position) {
          float* pixel = image + index * c_count;
          const uint8_t here = static_cast<uint8_t>(window_position);
          for (int64_t c = 0; c < c_count; ++c) pixel[c] += position[c] == here ? gradient[c] : 0.0f;
        });
      }
    }
  }
}

}  // namespace pooling
