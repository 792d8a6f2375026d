// winograd_3x3.h's kernels (3x3 stride-1 convolutions with padding 1, output size = input
// size) in simd.h's vocabulary, on winograd_simd.h's machinery: winograd.h includes this file
// after that one inside winograd::avx512 and winograd::avx2. Deliberately no include guard.
//
// The three directions are correlations of plain pixels with a 3x3 kernel, so the tiles read
// the image shifted by the padding (1) and write the result's pixels: forward x -> y with w,
// the input gradient dy -> dx with w flipped and transposed (C and K swapped), and the kernel
// gradient from the forward pass's tiles.

// The pixels of an NHWC image of `height` x `width` pixels of `depth` floats, shifted by
// `offset`: (p, q) is pixel (p - offset, q - offset), `outside` (zeros to read, null to skip)
// beyond the image.
template <typename T>
inline auto ImagePixels(T* pixels, int64_t height, int64_t width, int64_t depth, int64_t offset, T* outside) {
  return [=](int64_t n, int64_t p, int64_t q, int) {
    const int64_t row = p - offset, col = q - offset;
    if (row < 0 || row >= height || col < 0 || col >= width) return outside;
    return pixels + ((n * height + row) * width + col) * depth;
  };
}

// The forward pass's transformed kernel, U[xi][c][k] = (G w[., ., c, k] G^T)[xi].
template <int kTile>
void TransformKernel3x3Forward(const Plan& plan, const float* w, float* u) {
  constexpr int n = kTile + 2;
  const int64_t c_count = plan.in_depth(), k_count = plan.out_depth(), tap = c_count * k_count;
  int64_t offset[3][3];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) offset[a][b] = (3 * a + b) * tap;
  for (int64_t c = 0; c < c_count; ++c) {
    for (int64_t k = 0; k < k_count; k += kLanes) {
      Vec t[n][n];
      ExpandTaps<kTile, 3>(w + c * k_count + k, offset, t);
      for (int xi = 0; xi < n * n; ++xi) Store(u + xi * tap + c * k_count + k, t[xi / n][xi % n]);
    }
  }
}

// The input gradient's transformed kernel, U[xi][k][c]: the taps flipped (w[2 - a][2 - b]) and
// each tap transposed (k rows, c columns), kLanes x kLanes at a time.
template <int kTile>
void TransformKernel3x3Backward(const Plan& plan, const float* w, float* u) {
  constexpr int n = kTile + 2;
  const int64_t k_count = plan.in_depth(), c_count = plan.out_depth(), tap = c_count * k_count;
  int64_t offset[3][3];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) offset[a][b] = (3 * (2 - a) + 2 - b) * tap;
  for (int64_t c0 = 0; c0 < c_count; c0 += kLanes) {
    for (int64_t k0 = 0; k0 < k_count; k0 += kLanes) {
      Vec t[n * n][kLanes];
      for (int r = 0; r < kLanes; ++r) {
        Vec expanded[n][n];
        ExpandTaps<kTile, 3>(w + (c0 + r) * k_count + k0, offset, expanded);
        for (int xi = 0; xi < n * n; ++xi) t[xi][r] = expanded[xi / n][xi % n];
      }
      for (int xi = 0; xi < n * n; ++xi) {
        Transpose(t[xi]);
        for (int r = 0; r < kLanes; ++r) Store(u + xi * tap + (k0 + r) * c_count + c0, t[xi][r]);
      }
    }
  }
}

template <int kTile>
void Forward3x3(const Plan& plan, const Shape& s, const float* x, const float* w, float* y) {
  float* const u = ThreadBuffer(kKernel, plan.planes() * plan.in_depth() * plan.out_depth());
  TransformKernel3x3Forward<kTile>(plan, w, u);
  const std::vector<float> zeros(s.in_c, 0.0f);
  Correlate<kTile, 3>(plan, u, ImagePixels(x, s.in_h, s.in_w, s.in_c, 1, zeros.data()),
                      ImagePixels<float>(y, s.out_h, s.out_w, s.out_c, 0, nullptr));
}

template <int kTile>
void BackwardData3x3(const Plan& plan, const Shape& s, const float* dy, const float* w, float* dx) {
  float* const u = ThreadBuffer(kKernel, plan.planes() * plan.in_depth() * plan.out_depth());
  TransformKernel3x3Backward<kTile>(plan, w, u);
  const std::vector<float> zeros(s.out_c, 0.0f);
  Correlate<kTile, 3>(plan, u, ImagePixels(dy, s.out_h, s.out_w, s.out_c, 1, zeros.data()),
                      ImagePixels<float>(dx, s.in_h, s.in_w, s.in_c, 0, nullptr));
}

template <int kTile>
void BackwardWeights3x3(const Plan& plan, const Shape& s, const float* x, const float* dy, float* dw) {
  const int64_t tap = s.in_c * s.out_c;
  const std::vector<float> zeros(s.in_c, 0.0f);
  KernelGradient<kTile, 3>(plan, ImagePixels(x, s.in_h, s.in_w, s.in_c, 1, zeros.data()),
                           ImagePixels<const float>(dy, s.out_h, s.out_w, s.out_c, 0, nullptr),
                           [&](int64_t c, int64_t o, const Vec (&taps)[3][3]) {  // into w[a][b][c]
                             float* g = dw + c * s.out_c + o;
                             for (int a = 0; a < 3; ++a)
                               for (int b = 0; b < 3; ++b) Store(g + (3 * a + b) * tap, taps[a][b]);
                           });
}

// The entry points: the plan's tile size picks the instantiation.
inline void Forward3x3(const Plan& plan, const Shape& s, const float* x, const float* w, float* y) {
  plan.tile == 4 ? Forward3x3<4>(plan, s, x, w, y) : Forward3x3<2>(plan, s, x, w, y);
}

inline void BackwardData3x3(const Plan& plan, const Shape& s, const float* dy, const float* w, float* dx) {
  plan.tile == 4 ? BackwardData3x3<4>(plan, s, dy, w, dx) : BackwardData3x3<2>(plan, s, dy, w, dx);
}

inline void BackwardWeights3x3(const Plan& plan, const Shape& s, const float* x, const float* dy, float* dw) {
  plan.tile == 4 ? BackwardWeights3x3<4>(plan, s, x, dy, dw) : BackwardWeights3x3<2>(plan, s, x, dy, dw);
}
