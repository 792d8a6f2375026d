// The geometry of one convolution call as jaxmed's own kernels (narrow_conv.h,
// weight_gradient.h) take it; conv2d.cc fills it from oneDNN's description of the call.

#pragma once

#include <cstdint>

namespace jaxmed {

// Batch, input H/W/C, output H/W/C, kernel H/W, strides, low padding. Activations are NHWC,
// kernels HWIO, both dense.
struct ConvShape {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h, stride_w, pad_top, pad_left;
};

}  // namespace jaxmed
