// winograd.h's kernels, written once in simd.h's vocabulary: winograd.h includes this file
// inside winograd::avx512 and winograd::avx2, each compiled for its instruction set.
// Deliberately no include guard. The including namespace provides, besides the vocabulary,
// kRows x kVectors: the register tile of the products (tiles by kVectors * kLanes outputs).
//
// An n x n array of "transformed" values (n = kTile + kTaps - 1) is stored as n^2 planes, value
// (alpha, beta) in plane n alpha + beta, the planes `plane` floats apart.

constexpr int kBlock = kVectors * kLanes;  // output depth per product pass
// Where the outputs come only in half blocks (32 channels with AVX-512), the register tile is
// twice the rows of half the vectors: as many sums.
constexpr int kHalfBlock = kBlock / 2;

// Runs f(rows, vectors) with the register tile (as std::integral_constants) for `out_depth`
// outputs: kRows x kVectors, or 2 kRows x kVectors / 2 where out_depth is not whole blocks.
template <typename F>
inline void WithRegisterTile(int64_t out_depth, const F& f) {
  if (out_depth % kBlock == 0) return f(std::integral_constant<int, kRows>(), std::integral_constant<int, kVectors>());
  f(std::integral_constant<int, 2 * kRows>(), std::integral_constant<int, kVectors / 2>());
}

// sum over i of c[i] v(i), for constant c: once the loops are unrolled, GCC folds the tests,
// so a coefficient of 0 costs nothing, +-1 an addition or subtraction, others a multiply-add.
template <int kIn, typename Values>
inline Vec Combine(const float (&c)[kIn], const Values& v) {
  Vec sum = Zero();
  bool empty = true;
#pragma GCC unroll 6
  for (int i = 0; i < kIn; ++i) {
    if (c[i] == 0) continue;
    if (c[i] == 1 || c[i] == -1) {
      sum = empty ? (c[i] == -1 ? Sub(Zero(), v(i)) : v(i)) : (c[i] == -1 ? Sub(sum, v(i)) : Add(sum, v(i)));
    } else {
      sum = Fma(Broadcast(c[i]), v(i), sum);
    }
    empty = false;
  }
  return sum;
}

// out = M x M^T for a constant kOut x kIn matrix M.
template <int kOut, int kIn>
inline void Sandwich(const float (&m)[kOut][kIn], const Vec (&x)[kIn][kIn], Vec (&out)[kOut][kOut]) {
  Vec half[kOut][kIn];
#pragma GCC unroll 6
  for (int r = 0; r < kOut; ++r)
#pragma GCC unroll 6
    for (int s = 0; s < kIn; ++s) half[r][s] = Combine(m[r], [&](int i) { return x[i][s]; });
#pragma GCC unroll 6
  for (int r = 0; r < kOut; ++r)
#pragma GCC unroll 6
    for (int s = 0; s < kOut; ++s) out[r][s] = Combine(m[s], [&](int i) { return half[r][i]; });
}

// The tiles of a plan: kTile x kTile output super-pixels each, image by image, row by row, for a
// kTaps x kTaps kernel (each tile reads kSide x kSide inputs).
template <int kTile, int kTaps = 2>
struct Tiles {
  static constexpr int kSide = kTile + kTaps - 1;
  explicit Tiles(const Plan& plan)
      : rows((plan.rows + kTile - 1) / kTile),
        cols((plan.cols + kTile - 1) / kTile),
        per_image(rows * cols),
        count(plan.images * per_image) {}
  // Image and first output super-pixel row and column of tile t.
  void Locate(int64_t t, int64_t* n, int64_t* p0, int64_t* q0) const {
    *n = t / per_image;
    *p0 = kTile * (t % per_image / cols);
    *q0 = kTile * (t % cols);
  }
  int64_t rows, cols, per_image, count;
};

// B^T d B for tiles [t0, t0 + count): V[xi][t][in_depth], planes block * in_depth apart.
// source(n, p, q, g) points at group g of input super-pixel (p, q) of image n, or at zeros.
template <int kTile, int kTaps, typename Source>
void TransformInputs(const Plan& plan, const Tiles<kTile, kTaps>& tiles, const Source& source, int64_t t0,
                     int64_t count, int64_t block, float* v) {
  constexpr int n = kTile + kTaps - 1;
  const int64_t in_depth = plan.in_depth(), plane = block * in_depth;
  for (int64_t t = 0; t < count; ++t) {
    int64_t image, p0, q0;
    tiles.Locate(t0 + t, &image, &p0, &q0);
    for (int g = 0; g < plan.in_groups; ++g) {
      const float* d[n][n];
      for (int r = 0; r < n; ++r)
        for (int s = 0; s < n; ++s) d[r][s] = source(image, p0 + r, q0 + s, g);
      float* out = v + t * in_depth + g * plan.in_width;
      for (int64_t i = 0; i < plan.in_width; i += kLanes) {
        Vec x[n][n], transformed[n][n];
        for (int r = 0; r < n; ++r)
          for (int s = 0; s < n; ++s) x[r][s] = Load(d[r][s] + i);
        Sandwich(Matrices<kTile, kTaps>::kBT, x, transformed);
        for (int r = 0; r < n; ++r)
          for (int s = 0; s < n; ++s) Store(out + (n * r + s) * plane + i, transformed[r][s]);
      }
    }
  }
}

// The kTile x kTile outputs A^T m A of the transformed values at m (planes `plane` apart).
template <int kTile, int kTaps>
inline void Contract(const float* m, int64_t plane, Vec (&y)[kTile][kTile]) {
  constexpr int n = kTile + kTaps - 1;
  Vec x[n][n];
  for (int r = 0; r < n; ++r)
    for (int s = 0; s < n; ++s) x[r][s] = Load(m + (n * r + s) * plane);
  Sandwich(Matrices<kTile, kTaps>::kAT, x, y);
}

// Runs f(std::integral_constant<int, rows>) for 1 <= rows <= kRowsHere: one call site for a
// register tile's full and partial rows.
template <int kRowsHere, typename F>
inline void WithRows(int64_t rows, const F& f) {
  if constexpr (kRowsHere > 0) {
    if (rows == kRowsHere) return f(std::integral_constant<int, kRowsHere>());
    WithRows<kRowsHere - 1>(rows, f);
  }
}

// m[r][o] (kRowsHere rows, kVecs * kLanes outputs) = sum over `depth` of v[r][i] u[i][o].
template <int kRowsHere, int kVecs>
inline void Product(const float* v, int64_t depth, const float* u, int64_t u_stride, float* m, int64_t m_stride) {
  constexpr int kVectors = kVecs;
  Vec acc[kRowsHere][kVectors];
  for (int r = 0; r < kRowsHere; ++r)
    for (int j = 0; j < kVectors; ++j) acc[r][j] = Zero();
  for (int64_t i = 0; i < depth; ++i, u += u_stride) {
    Vec columns[kVectors];
    for (int j = 0; j < kVectors; ++j) columns[j] = Load(u + j * kLanes);
    for (int r = 0; r < kRowsHere; ++r) {
      const Vec x = Broadcast(v[r * depth + i]);
      for (int j = 0; j < kVectors; ++j) acc[r][j] = Fma(x, columns[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kRowsHere; ++r)
    for (int j = 0; j < kVectors; ++j) Store(m + r * m_stride + j * kLanes, acc[r][j]);
}

// du[r][o] (kRowsHere rows, kVecs * kLanes outputs) += sum over `count` tiles t of v[t][r] yhat[t][o].
template <int kRowsHere, int kVecs>
inline void OuterProducts(const float* v, int64_t v_stride, const float* yhat, int64_t yhat_stride, int64_t count,
                          float* du, int64_t du_stride) {
  constexpr int kVectors = kVecs;
  Vec acc[kRowsHere][kVectors];
  for (int r = 0; r < kRowsHere; ++r)
    for (int j = 0; j < kVectors; ++j) acc[r][j] = Load(du + r * du_stride + j * kLanes);
  for (int64_t t = 0; t < count; ++t, v += v_stride, yhat += yhat_stride) {
    Vec columns[kVectors];
    for (int j = 0; j < kVectors; ++j) columns[j] = Load(yhat + j * kLanes);
    for (int r = 0; r < kRowsHere; ++r) {
      const Vec x = Broadcast(v[r]);
      for (int j = 0; j < kVectors; ++j) acc[r][j] = Fma(x, columns[j], acc[r][j]);
    }
  }
  for (int r = 0; r < kRowsHere; ++r)
    for (int j = 0; j < kVectors; ++j) Store(du + r * du_stride + j * kLanes, acc[r][j]);
}

// The correlation of a plan with the transformed kernel u (U[xi][in_depth][out_depth]), tiles
// in blocks: each block's inputs transformed, its products M[xi][t][out_depth] = V U, M
// transformed into the outputs. sink(n, p, q, g) points at group g of output super-pixel
// (p, q), or is null where the output is cropped.
template <int kTile, int kTaps = 2, typename Source, typename Sink>
void Correlate(const Plan& plan, const float* u, const Source& source, const Sink& sink) {
  const int64_t in_depth = plan.in_depth(), out_depth = plan.out_depth();
  const Tiles<kTile, kTaps> tiles(plan);
  WithRegisterTile(out_depth, [&](auto tile_rows, auto tile_vectors) {
    constexpr int kTileRows = decltype(tile_rows)::value, kTileVectors = decltype(tile_vectors)::value;
    const int64_t block = plan.TilesPerBlock(kTileRows, tiles.count);
    float* const v = ThreadBuffer(kTiles, plan.planes() * block * (in_depth + out_depth));
    float* const m = v + plan.planes() * block * in_depth;
    for (int64_t t0 = 0; t0 < tiles.count; t0 += block) {
      const int64_t count = std::min(block, tiles.count - t0);
      TransformInputs(plan, tiles, source, t0, count, block, v);
      for (int xi = 0; xi < plan.planes(); ++xi) {
        const float* v_xi = v + xi * block * in_depth;
        const float* u_xi = u + xi * in_depth * out_depth;
        float* m_xi = m + xi * block * out_depth;
        for (int64_t o = 0; o < out_depth; o += kTileVectors * kLanes) {
          for (int64_t t = 0; t < count; t += kTileRows) {
            WithRows<kTileRows>(std::min<int64_t>(kTileRows, count - t), [&](auto rows) {
              Product<decltype(rows)::value, kTileVectors>(v_xi + t * in_depth, in_depth, u_xi + o, out_depth,
                                                           m_xi + t * out_depth + o, out_depth);
            });
          }
        }
      }
      for (int64_t t = 0; t < count; ++t) {
        int64_t n, p0, q0;
        tiles.Locate(t0 + t, &n, &p0, &q0);
        for (int g = 0; g < plan.out_groups; ++g) {
          float* y[kTile][kTile];
          for (int r = 0; r < kTile; ++r)
            for (int s = 0; s < kTile; ++s) y[r][s] = sink(n, p0 + r, q0 + s, g);
          for (int64_t o = 0; o < plan.out_width; o += kLanes) {
            Vec out[kTile][kTile];
            Contract<kTile, kTaps>(m + t * out_depth + g * plan.out_width + o, block * out_depth, out);
            for (int r = 0; r < kTile; ++r)
              for (int s = 0; s < kTile; ++s)
                if (y[r][s]) Store(y[r][s] + o, out[r][s]);
          }
        }
      }
    }
  });
}

// The HWIO kernel tap (of the 16, row-major) of super-kernel tap (u, v) at input group ab = 2a + b:
// w[2u + a][2v + b].
constexpr int64_t SuperTap(int64_t ab, int64_t u, int64_t v) { return 4 * (2 * u + ab / 2) + 2 * v + ab % 2; }

// G g G^T of the kTaps x kTaps taps at g + offset[u][v] (a kernel row each).
template <int kTile, int kTaps = 2>
inline void ExpandTaps(const float* g, const int64_t (&offset)[kTaps][kTaps],
                       Vec (&out)[kTile + kTaps - 1][kTile + kTaps - 1]) {
  Vec taps[kTaps][kTaps];
  for (int u = 0; u < kTaps; ++u)
    for (int v = 0; v < kTaps; ++v) taps[u][v] = Load(g + offset[u][v]);
  Sandwich(Matrices<kTile, kTaps>::kG, taps, out);
}

// The forward pass's transformed kernel, U[xi][(a, b, c)][k]: the 2x2 super-kernel's tap (u, v)
// at input group (a, b) is w[2u + a][2v + b], C x K with rows along k.
template <int kTile>
void TransformKernelForward(const Plan& plan, const float* w, float* u) {
  constexpr int n = kTile + 1;
  const int64_t c_count = plan.in_width, k_count = plan.out_width, tap = c_count * k_count;
  const int64_t plane = plan.in_depth() * k_count;
  for (int64_t ab = 0; ab < 4; ++ab) {
    const int64_t offset[2][2] = {{SuperTap(ab, 0, 0) * tap, SuperTap(ab, 0, 1) * tap},
                                  {SuperTap(ab, 1, 0) * tap, SuperTap(ab, 1, 1) * tap}};
    for (int64_t c = 0; c < c_count; ++c) {
      const float* g = w + c * k_count;
      float* row = u + (ab * c_count + c) * k_count;
      for (int64_t k = 0; k < k_count; k += kLanes) {
        Vec t[n][n];
        ExpandTaps<kTile>(g + k, offset, t);
        for (int xi = 0; xi < n * n; ++xi) Store(row + xi * plane + k, t[xi / n][xi % n]);
      }
    }
  }
}

// The input gradient's transformed kernel, U[xi][k][(a, b, c)]: the forward kernel's taps
// flipped (u -> 1 - u) and transposed (k rows, c columns), kLanes x kLanes at a time.
template <int kTile>
void TransformKernelBackward(const Plan& plan, const float* w, float* u) {
  constexpr int n = kTile + 1;
  const int64_t c_count = plan.out_width, k_count = plan.in_width, tap = c_count * k_count;
  const int64_t out_depth = plan.out_depth();
  for (int64_t ab = 0; ab < 4; ++ab) {
    const int64_t offset[2][2] = {{SuperTap(ab, 1, 1) * tap, SuperTap(ab, 1, 0) * tap},
                                  {SuperTap(ab, 0, 1) * tap, SuperTap(ab, 0, 0) * tap}};  // flipped
    for (int64_t c0 = 0; c0 < c_count; c0 += kLanes) {
      for (int64_t k0 = 0; k0 < k_count; k0 += kLanes) {
        Vec t[n * n][kLanes];
        for (int r = 0; r < kLanes; ++r) {
          Vec expanded[n][n];
          ExpandTaps<kTile>(w + (c0 + r) * k_count + k0, offset, expanded);
          for (int xi = 0; xi < n * n; ++xi) t[xi][r] = expanded[xi / n][xi % n];
        }
        for (int xi = 0; xi < n * n; ++xi) {
          Transpose(t[xi]);
          for (int r = 0; r < kLanes; ++r) Store(u + (xi * k_count + k0 + r) * out_depth + ab * c_count + c0, t[xi][r]);
        }
      }
    }
  }
}

// The super-pixels of the larger activation (x, or dx): group (a, b) of (p, q) is pixel
// (2p - 1 + a, 2q - 1 + b) of `pixels`, `outside` (zeros to read, null to skip) beyond the image.
template <typename T>
inline auto SuperPixels(const Shape& s, T* pixels, T* outside) {
  return [=](int64_t n, int64_t p, int64_t q, int g) {
    const int64_t row = 2 * p - 1 + g / 2, col = 2 * q - 1 + g % 2;
    if (row < 0 || row >= s.in_h || col < 0 || col >= s.in_w) return outside;
    return pixels + ((n * s.in_h + row) * s.in_w + col) * s.in_c;
  };
}

// The pixels of the smaller activation (y, or dy), shifted by `offset` (dy is padded by one):
// (p, q) is pixel (p - offset, q - offset), `outside` beyond the image.
template <typename T>
inline auto Pixels(const Shape& s, T* pixels, int64_t offset, T* outside) {
  return [=](int64_t n, int64_t p, int64_t q, int) {
    const int64_t row = p - offset, col = q - offset;
    if (row < 0 || row >= s.out_h || col < 0 || col >= s.out_w) return outside;
    return pixels + ((n * s.out_h + row) * s.out_w + col) * s.out_c;
  };
}

template <int kTile>
void Forward(const Plan& plan, const Shape& s, const float* x, const float* w, float* y) {
  float* const u = ThreadBuffer(kKernel, plan.planes() * plan.in_depth() * plan.out_depth());
  TransformKernelForward<kTile>(plan, w, u);
  const std::vector<float> zeros(s.in_c, 0.0f);
  Correlate<kTile>(plan, u, SuperPixels(s, x, zeros.data()), Pixels<float>(s, y, 0, nullptr));
}

template <int kTile>
void BackwardData(const Plan& plan, const Shape& s, const float* dy, const float* w, float* dx) {
  float* const u = ThreadBuffer(kKernel, plan.planes() * plan.in_depth() * plan.out_depth());
  TransformKernelBackward<kTile>(plan, w, u);
  const std::vector<float> zeros(s.out_c, 0.0f);
  Correlate<kTile>(plan, u, Pixels(s, dy, 1, zeros.data()), SuperPixels<float>(s, dx, nullptr));
}

// The kernel gradient: the forward pass's tiles give dL/dU[xi] = sum over tiles of V[xi] (x)
// (A dY A^T)[xi] (outer products over the channels), and dL/dw = G^T (dL/dU) G. Tiles go in
// blocks of up to 8 MB of transformed values, so that U's gradient is read and written once
// per block (4.7 MB for the largest dcgan128 layer: all its 16 images are one block).
// source(n, p, q, g) is the forward pass's input, gradients_at(n, p, q) the output gradient's
// pixel or null where cropped; store(i, o, taps) stores the kTaps x kTaps taps of input i and
// outputs [o, o + kLanes).
template <int kTile, int kTaps, typename Source, typename Gradients, typename TapSink>
void KernelGradient(const Plan& plan, const Source& source, const Gradients& gradients_at, const TapSink& store) {
  constexpr int n = kTile + kTaps - 1;
  const int64_t in_depth = plan.in_depth(), out_depth = plan.out_depth();
  const Tiles<kTile, kTaps> tiles(plan);
  const int64_t per_tile = n * n * sizeof(float) * (in_depth + out_depth);
  const int64_t block = std::clamp<int64_t>((8 << 20) / per_tile, 1, std::max<int64_t>(1, tiles.count));
  float* const v = ThreadBuffer(kTiles, n * n * (block * (in_depth + out_depth) + in_depth * out_depth));
  float* const yhat = v + n * n * block * in_depth;
  float* const du = yhat + n * n * block * out_depth;
  std::fill(du, du + n * n * in_depth * out_depth, 0.0f);
  for (int64_t t0 = 0; t0 < tiles.count; t0 += block) {
    const int64_t count = std::min(block, tiles.count - t0);
    TransformInputs(plan, tiles, source, t0, count, block, v);
    for (int64_t t = 0; t < count; ++t) {  // A dY A^T: the tile's output gradients, zero where cropped
      int64_t image, p0, q0;
      tiles.Locate(t0 + t, &image, &p0, &q0);
      const float* g[kTile][kTile];
      for (int r = 0; r < kTile; ++r)
        for (int c = 0; c < kTile; ++c) g[r][c] = gradients_at(image, p0 + r, q0 + c, 0);
      for (int64_t o = 0; o < out_depth; o += kLanes) {
        Vec gradients[kTile][kTile], expanded[n][n];
        for (int r = 0; r < kTile; ++r)
          for (int c = 0; c < kTile; ++c) gradients[r][c] = g[r][c] ? Load(g[r][c] + o) : Zero();
        Sandwich(Matrices<kTile, kTaps>::kA, gradients, expanded);
        for (int xi = 0; xi < n * n; ++xi) Store(yhat + (xi * block + t) * out_depth + o, expanded[xi / n][xi % n]);
      }
    }
    WithRegisterTile(out_depth, [&](auto tile_rows, auto tile_vectors) {
      constexpr int kTileRows = decltype(tile_rows)::value, kTileVectors = decltype(tile_vectors)::value;
      for (int xi = 0; xi < n * n; ++xi) {
        for (int64_t i = 0; i < in_depth; i += kTileRows) {
          for (int64_t o = 0; o < out_depth; o += kTileVectors * kLanes) {
            WithRows<kTileRows>(std::min<int64_t>(kTileRows, in_depth - i), [&](auto rows) {
              OuterProducts<decltype(rows)::value, kTileVectors>(v + xi * block * in_depth + i, in_depth,
                                                                 yhat + xi * block * out_depth + o, out_depth, count,
                                                                 du + (xi * in_depth + i) * out_depth + o, out_depth);
            });
          }
        }
      }
    });
  }
  for (int64_t i = 0; i < in_depth; ++i) {  // G^T dU G
    for (int64_t o = 0; o < out_depth; o += kLanes) {
      Vec x[n][n], taps[kTaps][kTaps];
      for (int xi = 0; xi < n * n; ++xi) x[xi / n][xi % n] = Load(du + (xi * in_depth + i) * out_depth + o);
      Sandwich(Matrices<kTile, kTaps>::kGT, x, taps);
      store(i, o, taps);
    }
  }
}

template <int kTile>
void BackwardWeights(const Plan& plan, const Shape& s, const float* x, const float* dy, float* dw) {
  const int64_t c_count = s.in_c, out_depth = plan.out_depth(), tap = c_count * out_depth;
  const std::vector<float> zeros(s.in_c, 0.0f);
  KernelGradient<kTile, 2>(plan, SuperPixels(s, x, zeros.data()), Pixels<const float>(s, dy, 0, nullptr),
                           [&](int64_t i, int64_t o, const Vec (&taps)[2][2]) {  // into w[2u + a][2v + b][c]
                             const int64_t ab = i / c_count, c = i % c_count;
                             float* g = dw + c * out_depth + o;
                             for (int u = 0; u < 2; ++u)
                               for (int v = 0; v < 2; ++v) Store(g + SuperTap(ab, u, v) * tap, taps[u][v]);
                           });
}

// The entry points: the plan's tile size picks the instantiation.
inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
  const Plan plan = Plan::Forward(s);
  plan.tile == 3 ? Forward<3>(plan, s, x, w, y) : Forward<2>(plan, s, x, w, y);
}

inline void BackwardData(const Shape& s, const float* dy, const float* w, float* dx) {
  const Plan plan = Plan::BackwardData(s);
  plan.tile == 3 ? BackwardData<3>(plan, s, dy, w, dx) : BackwardData<2>(plan, s, dy, w, dx);
}

inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  const Plan plan = Plan::Forward(s);
  plan.tile == 3 ? BackwardWeights<3>(plan, s, x, dy, dw) : BackwardWeights<2>(plan, s, x, dy, dw);
}
