// 3x3 stride-1 float32 convolutions with padding 1 and output size = input size (the ResNet,
// seed CNN and U-Net layers) with Winograd's F(4x4, 3x3) or F(2x2, 3x3): forward pass, input
// gradient and kernel gradient, on winograd.h's plans, blocking and products
// (winograd_3x3_simd.h).
//
// Why: oneDNN runs these layers at about the CPU's float32 FMA peak already; F(2x2, 3x3) needs
// 16 products per 2x2 outputs instead of 36, with transforms whose entries are 0, +-1 and
// +-1/2 (the rounding of a direct sum), F(4x4, 3x3) 36 per 4x4 instead of 144 (larger entries,
// still within float32 tolerances; TileSide3x3 picks one). The input gradient is the same
// correlation of dy with the kernel flipped and transposed; the kernel gradient sums the forward
// tiles' outer products. Where the transforms cost more than the products save (Use3x3), oneDNN
// keeps the layer; bfloat16 operands keep it too (conv2d.cc's RunWinograd).

#pragma once

#include <cstdint>

#include "winograd.h"

namespace winograd {

enum class Pass { kForward, kBackwardData, kBackwardWeights };

// The tile side, m of F(m x m, 3x3): 4 (fewer products: 2.25 per output against 4) where the
// outputs are at least 8 x 8, which measured faster than 2 in every direction from 8 x 8 to
// 128 x 128 at 32 to 256 channels; 2 below, where F(4x4, 3x3)'s tiles would be mostly cropped
// and its kernel (36 planes against 16) costs more to transform than its products save.
inline int TileSide3x3(const Shape& s) { return s.out_h >= 8 && s.out_w >= 8 ? 4 : 2; }

// The correlation a pass computes, in pixels: forward and kernel gradient read x (C deep) and
// give y's tiles (K deep); the input gradient reads dy (K deep) and gives dx's (C deep).
inline Plan Plan3x3(const Shape& s, Pass pass) {
  const bool data = pass == Pass::kBackwardData;
  Plan plan{s.batch, s.out_h, s.out_w, 1, data ? s.out_c : s.in_c, 1, data ? s.in_c : s.out_c};
  plan.taps = 3;
  plan.tile = TileSide3x3(s);
  return plan;
}

// Whether the kernels can compute this call: a 3x3 stride-1 convolution with low padding 1
// and output size = input size ("SAME"), channels in whole vectors, the products' outputs (K,
// or C for the input gradient) in whole (half) register tiles: 32s with AVX-512, 8s with AVX2.
inline bool Supports3x3(const Shape& s, Pass pass) {
  if (BestIsa() == Isa::kNone || s.k_h != 3 || s.k_w != 3 || s.stride_h != 1 || s.stride_w != 1 ||
      s.pad_top != 1 || s.pad_left != 1 || s.out_h != s.in_h || s.out_w != s.in_w) {
    return false;
  }
  const bool wide = BestIsa() == Isa::kAvx512;
  const int64_t lanes = wide ? avx512::kLanes : avx2::kLanes;
  const int64_t block = wide ? avx512::kHalfBlock : avx2::kHalfBlock;
  const int64_t products = pass == Pass::kBackwardData ? s.in_c : s.out_c;
  return s.in_c % lanes == 0 && s.out_c % lanes == 0 && products % block == 0;
}

// Whether conv2d.cc runs this call here rather than with oneDNN: wherever the kernels can. Measured
// at batch 32 on every such layer of resnet18, seed_cnn and the U-Net (32 to 512 channels, 4 x 4
// to 128 x 128), they were faster than oneDNN's direct kernels in every direction with AVX-512,
// and with AVX2 (capped on an AVX-512 CPU) in all but resnet18's 4 x 4 x 512 input gradient, even.
inline bool Use3x3(const Shape& s, Pass pass) { return Supports3x3(s, pass); }

// y = conv(x, w) (call only if Supports3x3(s, Pass::kForward)).
inline void Forward3x3(const Shape& s, const float* x, const float* w, float* y) {
  const Plan plan = Plan3x3(s, Pass::kForward);
  BestIsa() == Isa::kAvx512 ? avx512::Forward3x3(plan, s, x, w, y) : avx2::Forward3x3(plan, s, x, w, y);
}

// dx = conv^T(dy, w), every element written (call only if Supports3x3(s, Pass::kBackwardData)).
inline void BackwardData3x3(const Shape& s, const float* dy, const float* w, float* dx) {
  const Plan plan = Plan3x3(s, Pass::kBackwardData);
  BestIsa() == Isa::kAvx512 ? avx512::BackwardData3x3(plan, s, dy, w, dx)
                            : avx2::BackwardData3x3(plan, s, dy, w, dx);
}

// dw = d conv / dw (x, dy), every element written (call only if Supports3x3(s, Pass::kBackwardWeights)).
inline void BackwardWeights3x3(const Shape& s, const float* x, const float* dy, float* dw) {
  const Plan plan = Plan3x3(s, Pass::kBackwardWeights);
  BestIsa() == Isa::kAvx512 ? avx512::BackwardWeights3x3(plan, s, x, dy, dw)
                            : avx2::BackwardWeights3x3(plan, s, x, dy, dw);
}

}  // namespace winograd
