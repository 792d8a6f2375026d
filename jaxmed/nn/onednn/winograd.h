// 4x4 stride-2 float32 convolutions (low padding 1: the DCGAN layers) with Winograd's minimal
// filtering, F(2x2, 2x2) or F(3x3, 2x2): forward pass, input gradient and kernel gradient, in
// AVX-512 or AVX2.
//
// Why: these layers are most of a dcgan128 step, and oneDNN already runs them at about the
// CPU's float32 FMA peak; the only way left to be faster is fewer multiplications. A 4x4
// stride-2 convolution is a 2x2 stride-1 correlation of the input's space-to-depth "super-
// pixels" (the 2x2 pixel blocks at rows 2p - 1, 2p and columns 2q - 1, 2q: 4C values) with a
// 2x2 super-kernel (4C x K per tap), and its input gradient is the 2x2 correlation of dy
// (padded by one) with that kernel flipped and transposed, giving dx's super-pixels. Winograd's
// algorithm (Lavin and Gray, 2016; Matrices below) computes an m x m block of a 2x2
// correlation's outputs from the (m + 1)^2 inputs under it with (m + 1)^2 elementwise products
// instead of 4 m^2: 9 for 4 outputs (m = 2), 16 for 9 (m = 3). Over the channels each elementwise
// product is a matrix product (tiles x 4C times 4C x K), which is where the time goes. The
// transforms' entries are 0, +-1 and +-1/2, so the rounding is that of a direct sum (tests
// compare with lax at float32 tolerance).
//
// The widest layers' input gradients gain least: their transformed kernel is rebuilt on every
// call, as the weights change every step. Tiles go in blocks whose transformed inputs and
// products stay in L2 (the block size matters little; all of a part's tiles at once is slower).
// Layouts are conv2d.cc's: activations NHWC, kernels HWIO, dense. The same machinery, with a
// 3-tap kernel, runs the 3x3 stride-1 layers (winograd_3x3.h).

#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "conv_shape.h"
#include "simd.h"

namespace winograd {

using Shape = jaxmed::ConvShape;

// Winograd's minimal filtering F(m x m, r x r): from the n x n inputs d under a tile of m x m
// outputs (n = m + r - 1), the outputs are A^T [(G g G^T) . (B^T d B)] A, with n^2 products
// instead of r^2 m^2. The kernel gradient runs the same algebra backwards:
// dL/dg = G^T [sum over tiles of (B^T d B) . (A dY A^T)] G. With points 0, 1, -1 (and infinity),
// all but F(4x4, 3x3), the entries are 0, +-1 and +-1/2: the rounding is that of a direct sum.
template <int kTile, int kTaps>
struct Matrices;

template <>
struct Matrices<2, 2> {
  static constexpr float kBT[3][3] = {{1, -1, 0}, {0, 1, 0}, {0, -1, 1}};
  static constexpr float kG[3][2] = {{1, 0}, {1, 1}, {0, 1}};
  static constexpr float kGT[2][3] = {{1, 1, 0}, {0, 1, 1}};
  static constexpr float kAT[2][3] = {{1, 1, 0}, {0, 1, 1}};
  static constexpr float kA[3][2] = {{1, 0}, {1, 1}, {0, 1}};
};

template <>
struct Matrices<3, 2> {
  static constexpr float kBT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
  static constexpr float kG[4][2] = {{1, 0}, {0.5f, 0.5f}, {0.5f, -0.5f}, {0, 1}};
  static constexpr float kGT[2][4] = {{1, 0.5f, 0.5f, 0}, {0, 0.5f, -0.5f, 1}};
  static constexpr float kAT[3][4] = {{1, 1, 1, 0}, {0, 1, -1, 0}, {0, 1, 1, 1}};
  static constexpr float kA[4][3] = {{1, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 1}};
};

// F(2x2, 3x3), the 3x3 stride-1 layers' (Lavin and Gray's matrices).
template <>
struct Matrices<2, 3> {
  static constexpr float kBT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float kG[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float kGT[3][4] = {{1, 0.5f, 0.5f, 0}, {0, 0.5f, -0.5f, 0}, {0, 0.5f, 0.5f, 1}};
  static constexpr float kAT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
  static constexpr float kA[4][2] = {{1, 0}, {1, 1}, {1, -1}, {0, -1}};
};

// F(4x4, 3x3) (points 0, +-1, +-2 and infinity; Lavin and Gray's matrices): 36 products for 16
// outputs where F(2x2, 3x3) needs 64. Its entries (up to 8, down to 1/24) round more, within
// float32 tolerances over the layers' channel sums (the tests compare it with lax).
template <>
struct Matrices<4, 3> {
  static constexpr float kBT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float kG[6][3] = {{1.0f / 4, 0, 0},
                                     {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                     {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                     {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                     {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                     {0, 0, 1}};
  static constexpr float kGT[3][6] = {{1.0f / 4, -1.0f / 6, -1.0f / 6, 1.0f / 24, 1.0f / 24, 0},
                                      {0, -1.0f / 6, 1.0f / 6, 1.0f / 12, -1.0f / 12, 0},
                                      {0, -1.0f / 6, -1.0f / 6, 1.0f / 6, 1.0f / 6, 1}};
  static constexpr float kAT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  static constexpr float kA[6][4] = {
      {1, 0, 0, 0}, {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 2, 4, 8}, {1, -2, 4, -8}, {0, 0, 0, 1}};
};

// The correlation one call computes (2x2 of super-pixels, or 3x3 of pixels: `taps`): `rows` x
// `cols` outputs per image, inputs and outputs in groups of contiguous floats (a super-pixel's 4
// pixels, or one pixel), in tiles of `tile` x `tile` outputs.
struct Plan {
  int64_t images, rows, cols;
  int in_groups;
  int64_t in_width;
  int out_groups;
  int64_t out_width;
  int tile = 2;
  int taps = 2;  // the kernel's side, r

  int64_t in_depth() const { return in_groups * in_width; }
  int64_t out_depth() const { return out_groups * out_width; }
  int planes() const { return (tile + taps - 1) * (tile + taps - 1); }

  // Products per image and channel pair with tiles of m x m: (m + r - 1)^2 per tile, tiles
  // cropped at the edges included.
  int64_t Products(int m) const {
    return (m + taps - 1) * (m + taps - 1) * ((rows + m - 1) / m) * ((cols + m - 1) / m);
  }

  // The tile side with fewer products (3 at dcgan128's 32x32 outputs and at every input
  // gradient's (h + 1) x (w + 1); a tie goes to 2, whose transforms are cheaper).
  Plan WithBestTile() const {
    Plan plan = *this;
    plan.tile = Products(3) < Products(2) ? 3 : 2;
    return plan;
  }

  // Tiles per block: the block's transformed inputs and products in about 512 KB of L2, at
  // least 8 and at most 16 register tiles of `register_rows` tiles. A 3x3 plan whose transformed
  // kernel outgrows L2 (kStreamedKernelBytes: small images, wide layers) takes up to
  // kMaxStreamedTiles of its `tiles` in one block instead: the kernel is read from memory once
  // per block, and it then costs more than the tiles' data.
  static constexpr int64_t kStreamedKernelBytes = 4 << 20, kMaxStreamedTiles = 512;
  int64_t TilesPerBlock(int register_rows, int64_t tiles) const {
    const int64_t fitting = (512 << 10) / (planes() * sizeof(float) * (in_depth() + out_depth()));
    const int64_t block = std::clamp<int64_t>(fitting / register_rows, 8, 16) * register_rows;
    if (taps != 3 || planes() * sizeof(float) * in_depth() * out_depth() <= kStreamedKernelBytes) return block;
    return std::max(block, std::min(tiles, kMaxStreamedTiles));
  }

  // x (super-pixels, 4 groups of C) -> y (pixels of K).
  static Plan Forward(const Shape& s) { return Plan{s.batch, s.out_h, s.out_w, 4, s.in_c, 1, s.out_c}.WithBestTile(); }
  // dy (pixels of K, padded by one) -> dx (super-pixels at rows 0 .. in_h / 2, 4 groups of C).
  static Plan BackwardData(const Shape& s) {
    return Plan{s.batch, s.in_h / 2 + 1, s.in_w / 2 + 1, 1, s.out_c, 4, s.in_c}.WithBestTile();
  }
};

// A thread's buffer for the transformed kernel (kKernel) or for the transformed tiles (kTiles),
// at least `floats` long; kept between calls, so each thread holds its largest (for dcgan128 at
// batch 32: 8.4 and 11.8 MB) instead of allocating and faulting in fresh pages every call.
enum Buffer { kKernel, kTiles };
inline float* ThreadBuffer(Buffer which, int64_t floats) {
  thread_local std::vector<float> buffers[2];
  if (static_cast<int64_t>(buffers[which].size()) < floats) buffers[which].resize(floats);
  return buffers[which].data();
}

}  // namespace winograd

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace winograd::avx512 {

using namespace jaxmed::simd::avx512;
constexpr int kRows = 6, kVectors = 4;  // 24 sums + 4 kernel vectors + 1 input of the 32 registers

#include "winograd_simd.h"
#include "winograd_3x3_simd.h"

}  // namespace winograd::avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace winograd::avx2 {

using namespace jaxmed::simd::avx2;
constexpr int kRows = 6, kVectors = 2;  // 12 sums + 2 kernel vectors + 1 input of the 16 registers

#include "winograd_simd.h"
#include "winograd_3x3_simd.h"

}  // namespace winograd::avx2
#pragma GCC pop_options

namespace winograd {

using jaxmed::simd::BestIsa;
using jaxmed::simd::Isa;

// Whether the kernels below compute this call: a 4x4 stride-2 convolution with low padding 1,
// channels in whole vectors, the products' outputs (K forward and for the kernel gradient, 4C
// for the input gradient) in whole tiles.
inline bool Supported(const Shape& s, bool backward_data) {
  if (BestIsa() == Isa::kNone || s.k_h != 4 || s.k_w != 4 || s.stride_h != 2 || s.stride_w != 2 ||
      s.pad_top != 1 || s.pad_left != 1) {
    return false;
  }
  const bool wide = BestIsa() == Isa::kAvx512;
  const int64_t lanes = wide ? avx512::kLanes : avx2::kLanes, block = wide ? avx512::kBlock : avx2::kBlock;
  const int64_t products = backward_data ? 4 * s.in_c : s.out_c;
  if (s.in_c % lanes != 0 || s.out_c % lanes != 0 || products % block != 0) return false;
  // Products against a direct convolution's 4 per output super-pixel (4 taps of the 2x2 super-
  // kernel): below a quarter fewer (F(2x2, 2x2) for the input gradient at 8x8: 225 against 256)
  // the transforms cost more than they save, and oneDNN is faster.
  const Plan plan = backward_data ? Plan::BackwardData(s) : Plan::Forward(s);
  if (plan.Products(plan.tile) > 0.75 * 4 * s.out_h * s.out_w) return false;
  // Tiles in the call: the kernel, transformed on every call, pays off only over enough of them,
  // more for the input gradient, whose kernel is also transposed (the thresholds leave a margin
  // over the break-even points).
  const int64_t tiles = s.batch * plan.Products(plan.tile) / plan.planes();
  return tiles >= (backward_data ? 128 : 32);
}

// y = conv(x, w) (call only if Supported(s, false)).
inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
  BestIsa() == Isa::kAvx512 ? avx512::Forward(s, x, w, y) : avx2::Forward(s, x, w, y);
}

// dx = conv^T(dy, w), every element written (call only if Supported(s, true)).
inline void BackwardData(const Shape& s, const float* dy, const float* w, float* dx) {
  BestIsa() == Isa::kAvx512 ? avx512::BackwardData(s, dy, w, dx) : avx2::BackwardData(s, dy, w, dx);
}

// dw = d conv / dw (x, dy), every element written (call only if Supported(s, false)).
inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  BestIsa() == Isa::kAvx512 ? avx512::BackwardWeights(s, x, dy, dw) : avx2::BackwardWeights(s, x, dy, dw);
}

}  // namespace winograd
