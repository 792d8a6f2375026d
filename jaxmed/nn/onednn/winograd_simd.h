// winograd.h's kernels, written once in simd.h's vocabulary: winograd.h includes this file
// inside winograd::avx512 and winograd::avx2, each compiled for its instruction set.
// Deliberately no include guard. The including namespace provides, besides the vocabulary,
// kRows x kVectors: the register tile of the products (tiles by kVectors * kLanes outputs).
//
// F(2x2, 2x2)'s matrices: B^T = [1 -1 0; 0 1 0; 0 -1 1] (inputs), G = A = [1 0; 1 1; 0 1]
// (kernel; output gradients), A^T = G^T (outputs; kernel gradient). A 3x3 array of values
// indexed xi = 3 alpha + beta is "transformed"; its planes are `plane` floats apart.

constexpr int kBlock = kVectors * kLanes;  // output depth per product pass

// G g G^T of four 2x2 values g[u][v]: each row pair's sum between the rows, then each column's.
inline void Expand(Vec g00, Vec g01, Vec g10, Vec g11, Vec* out) {
  const Vec rows[3][2] = {{g00, g01}, {Add(g00, g10), Add(g01, g11)}, {g10, g11}};
  for (int a = 0; a < 3; ++a) {
    out[3 * a] = rows[a][0];
    out[3 * a + 1] = Add(rows[a][0], rows[a][1]);
    out[3 * a + 2] = rows[a][1];
  }
}

// A^T m A of 3x3 values m (plane p at m + p * plane): the 2x2 outputs y[r][s].
inline void Contract(const float* m, int64_t plane, Vec y[2][2]) {
  Vec f[2][3];
  for (int s = 0; s < 3; ++s) {
    const Vec middle = Load(m + (3 + s) * plane);
    f[0][s] = Add(Load(m + s * plane), middle);
    f[1][s] = Add(middle, Load(m + (6 + s) * plane));
  }
  for (int r = 0; r < 2; ++r) {
    y[r][0] = Add(f[r][0], f[r][1]);
    y[r][1] = Add(f[r][1], f[r][2]);
  }
}

// The tiles of a plan: 2x2 output super-pixels each, image by image, row by row.
struct Tiles {
  explicit Tiles(const Plan& plan)
      : rows((plan.rows + 1) / 2), cols((plan.cols + 1) / 2), per_image(rows * cols), count(plan.images * per_image) {}
  // Image and first output super-pixel row and column of tile t.
  void Locate(int64_t t, int64_t* n, int64_t* p0, int64_t* q0) const {
    *n = t / per_image;
    *p0 = 2 * (t % per_image / cols);
    *q0 = 2 * (t % cols);
  }
  int64_t rows, cols, per_image, count;
};

// B^T d B for tiles [t0, t0 + count): V[xi][t][in_depth], planes block * in_depth apart.
// source(n, p, q, g) points at group g of input super-pixel (p, q) of image n, or at zeros.
template <typename Source>
void TransformInputs(const Plan& plan, const Tiles& tiles, const Source& source, int64_t t0, int64_t count,
                     int64_t block, float* v) {
  const int64_t in_depth = plan.in_depth(), plane = block * in_depth;
  for (int64_t t = 0; t < count; ++t) {
    int64_t n, p0, q0;
    tiles.Locate(t0 + t, &n, &p0, &q0);
    for (int g = 0; g < plan.in_groups; ++g) {
      const float* d[3][3];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) d[r][s] = source(n, p0 + r, q0 + s, g);
      float* out = v + t * in_depth + g * plan.in_width;
      for (int64_t i = 0; i < plan.in_width; i += kLanes) {
        Vec e[3][3];
        for (int s = 0; s < 3; ++s) {
          const Vec middle = Load(d[1][s] + i);
          e[0][s] = Sub(Load(d[0][s] + i), middle);
          e[1][s] = middle;
          e[2][s] = Sub(Load(d[2][s] + i), middle);
        }
        for (int r = 0; r < 3; ++r) {
          float* row = out + 3 * r * plane + i;
          Store(row, Sub(e[r][0], e[r][1]));
          Store(row + plane, e[r][1]);
          Store(row + 2 * plane, Sub(e[r][2], e[r][1]));
        }
      }
    }
  }
}

// Runs f(std::integral_constant<int, rows>) for 1 <= rows <= kRowsHere: one call site for a
// register tile's full and partial rows.
template <int kRowsHere = kRows, typename F>
inline void WithRows(int64_t rows, const F& f) {
  if constexpr (kRowsHere > 0) {
    if (rows == kRowsHere) return f(std::integral_constant<int, kRowsHere>());
    WithRows<kRowsHere - 1>(rows, f);
  }
}

// m[r][o] (kRowsHere rows, kBlock outputs) = sum over `depth` of v[r][i] u[i][o].
template <int kRowsHere>
inline void Product(const float* v, int64_t depth, const float* u, int64_t u_stride, float* m, int64_t m_stride) {
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

// du[r][o] (kRowsHere rows, kBlock outputs) += sum over `count` tiles t of v[t][r] yhat[t][o].
template <int kRowsHere>
inline void OuterProducts(const float* v, int64_t v_stride, const float* yhat, int64_t yhat_stride, int64_t count,
                          float* du, int64_t du_stride) {
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
// in blocks: each block's inputs transformed, its 9 products M[xi][t][out_depth] = V U, M
// transformed into the outputs. sink(n, p, q, g) points at group g of output super-pixel
// (p, q), or is null where the output is cropped.
template <typename Source, typename Sink>
void Correlate(const Plan& plan, const float* u, const Source& source, const Sink& sink) {
  const int64_t in_depth = plan.in_depth(), out_depth = plan.out_depth();
  const Tiles tiles(plan);
  const int64_t block = plan.TilesPerBlock(kRows);
  thread_local std::vector<float> scratch;
  scratch.resize(9 * block * (in_depth + out_depth));
  float* const v = scratch.data();
  float* const m = v + 9 * block * in_depth;
  for (int64_t t0 = 0; t0 < tiles.count; t0 += block) {
    const int64_t count = std::min(block, tiles.count - t0);
    TransformInputs(plan, tiles, source, t0, count, block, v);
    for (int xi = 0; xi < 9; ++xi) {
      const float* v_xi = v + xi * block * in_depth;
      const float* u_xi = u + xi * in_depth * out_depth;
      float* m_xi = m + xi * block * out_depth;
      for (int64_t o = 0; o < out_depth; o += kBlock) {
        for (int64_t t = 0; t < count; t += kRows) {
          WithRows(std::min<int64_t>(kRows, count - t), [&](auto rows) {
            Product<decltype(rows)::value>(v_xi + t * in_depth, in_depth, u_xi + o, out_depth, m_xi + t * out_depth + o, out_depth);
          });
        }
      }
    }
    for (int64_t t = 0; t < count; ++t) {
      int64_t n, p0, q0;
      tiles.Locate(t0 + t, &n, &p0, &q0);
      for (int g = 0; g < plan.out_groups; ++g) {
        float* y[2][2];
        for (int r = 0; r < 2; ++r)
          for (int s = 0; s < 2; ++s) y[r][s] = sink(n, p0 + r, q0 + s, g);
        for (int64_t o = 0; o < plan.out_width; o += kLanes) {
          Vec out[2][2];
          Contract(m + t * out_depth + g * plan.out_width + o, block * out_depth, out);
          for (int r = 0; r < 2; ++r)
            for (int s = 0; s < 2; ++s)
              if (y[r][s]) Store(y[r][s] + o, out[r][s]);
        }
      }
    }
  }
}

// The forward pass's input super-pixels: group (a, b) of (p, q) is pixel (2p - 1 + a, 2q - 1 + b).
inline auto SuperPixels(const Shape& s, const float* x, const float* zeros) {
  return [=](int64_t n, int64_t p, int64_t q, int g) {
    const int64_t row = 2 * p - 1 + g / 2, col = 2 * q - 1 + g % 2;
    if (row < 0 || row >= s.in_h || col < 0 || col >= s.in_w) return zeros;
    return x + ((n * s.in_h + row) * s.in_w + col) * s.in_c;
  };
}

// The forward pass's transformed kernel, U[xi][(a, b, c)][k]: the 2x2 super-kernel's tap (u, v)
// at input group (a, b) is w[2u + a][2v + b], C x K with rows along k.
inline void TransformKernelForward(const Plan& plan, const float* w, float* u) {
  const int64_t c_count = plan.in_width, k_count = plan.out_width, tap = c_count * k_count;
  const int64_t plane = plan.in_depth() * k_count;
  for (int64_t ab = 0; ab < 4; ++ab) {
    for (int64_t c = 0; c < c_count; ++c) {
      const float* g = w + (4 * (ab / 2) + ab % 2) * tap + c * k_count;  // tap (u, v) at g + (8u + 2v) * tap
      float* row = u + (ab * c_count + c) * k_count;
      for (int64_t k = 0; k < k_count; k += kLanes) {
        Vec t[9];
        Expand(Load(g + k), Load(g + 2 * tap + k), Load(g + 8 * tap + k), Load(g + 10 * tap + k), t);
        for (int xi = 0; xi < 9; ++xi) Store(row + xi * plane + k, t[xi]);
      }
    }
  }
}

// The input gradient's transformed kernel, U[xi][k][(a, b, c)]: the forward kernel's taps
// flipped (u -> 1 - u) and transposed (k rows, c columns), kLanes x kLanes at a time.
inline void TransformKernelBackward(const Plan& plan, const float* w, float* u) {
  const int64_t c_count = plan.out_width, k_count = plan.in_width, tap = c_count * k_count;
  const int64_t out_depth = plan.out_depth();
  for (int64_t ab = 0; ab < 4; ++ab) {
    const float* g = w + (10 + 4 * (ab / 2) + ab % 2) * tap;  // flipped tap (u, v) at g - (8u + 2v) * tap
    for (int64_t c0 = 0; c0 < c_count; c0 += kLanes) {
      for (int64_t k0 = 0; k0 < k_count; k0 += kLanes) {
        Vec t[9][kLanes];
        for (int r = 0; r < kLanes; ++r) {
          const float* row = g + (c0 + r) * k_count + k0;
          Vec taps[9];
          Expand(Load(row), Load(row - 2 * tap), Load(row - 8 * tap), Load(row - 10 * tap), taps);
          for (int xi = 0; xi < 9; ++xi) t[xi][r] = taps[xi];
        }
        for (int xi = 0; xi < 9; ++xi) {
          Transpose(t[xi]);
          for (int r = 0; r < kLanes; ++r) Store(u + (xi * k_count + k0 + r) * out_depth + ab * c_count + c0, t[xi][r]);
        }
      }
    }
  }
}

inline void Forward(const Shape& s, const float* x, const float* w, float* y) {
  const Plan plan = Plan::Forward(s);
  thread_local std::vector<float> u;
  u.resize(9 * plan.in_depth() * plan.out_depth());
  TransformKernelForward(plan, w, u.data());
  const std::vector<float> zeros(s.in_c, 0.0f);
  Correlate(plan, u.data(), SuperPixels(s, x, zeros.data()), [&](int64_t n, int64_t p, int64_t q, int) -> float* {
    if (p >= s.out_h || q >= s.out_w) return nullptr;
    return y + ((n * s.out_h + p) * s.out_w + q) * s.out_c;
  });
}

inline void BackwardData(const Shape& s, const float* dy, const float* w, float* dx) {
  const Plan plan = Plan::BackwardData(s);
  thread_local std::vector<float> u;
  u.resize(9 * plan.in_depth() * plan.out_depth());
  TransformKernelBackward(plan, w, u.data());
  const std::vector<float> zeros(s.out_c, 0.0f);
  Correlate(
      plan, u.data(),
      [&](int64_t n, int64_t p, int64_t q, int) {  // dy padded by one
        const int64_t row = p - 1, col = q - 1;
        if (row < 0 || row >= s.out_h || col < 0 || col >= s.out_w) return zeros.data();
        return dy + ((n * s.out_h + row) * s.out_w + col) * s.out_c;
      },
      [&](int64_t n, int64_t p, int64_t q, int g) -> float* {
        const int64_t row = 2 * p - 1 + g / 2, col = 2 * q - 1 + g % 2;
        if (row < 0 || row >= s.in_h || col < 0 || col >= s.in_w) return nullptr;
        return dx + ((n * s.in_h + row) * s.in_w + col) * s.in_c;
      });
}

// The kernel gradient: the forward pass's tiles give dL/dU[xi] = sum over tiles of V[xi] (x)
// (A dY A^T)[xi] (outer products over the channels), and dL/dw = G^T (dL/dU) G. Tiles go in
// blocks of up to 8 MB of transformed values, so that U's gradient is read and written once
// per block (4.7 MB for the largest dcgan128 layer: all its 16 images are one block).
inline void BackwardWeights(const Shape& s, const float* x, const float* dy, float* dw) {
  const Plan plan = Plan::Forward(s);
  const int64_t in_depth = plan.in_depth(), out_depth = plan.out_depth(), c_count = s.in_c;
  const Tiles tiles(plan);
  const int64_t block =
      std::clamp<int64_t>((8 << 20) / (9 * sizeof(float) * (in_depth + out_depth)), 1, std::max<int64_t>(1, tiles.count));
  thread_local std::vector<float> scratch;
  scratch.assign(9 * (block * (in_depth + out_depth) + in_depth * out_depth), 0.0f);
  float* const v = scratch.data();
  float* const yhat = v + 9 * block * in_depth;
  float* const du = yhat + 9 * block * out_depth;
  const std::vector<float> zeros(s.in_c, 0.0f);
  const auto source = SuperPixels(s, x, zeros.data());
  for (int64_t t0 = 0; t0 < tiles.count; t0 += block) {
    const int64_t count = std::min(block, tiles.count - t0);
    TransformInputs(plan, tiles, source, t0, count, block, v);
    for (int64_t t = 0; t < count; ++t) {  // A dY A^T: the 2x2 output gradients, zero where cropped
      int64_t n, p0, q0;
      tiles.Locate(t0 + t, &n, &p0, &q0);
      const float* g[2][2];
      for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 2; ++c) {
          const bool inside = p0 + r < s.out_h && q0 + c < s.out_w;
          g[r][c] = inside ? dy + ((n * s.out_h + p0 + r) * s.out_w + q0 + c) * s.out_c : nullptr;
        }
      for (int64_t o = 0; o < out_depth; o += kLanes) {
        Vec e[9];
        auto at = [&](int r, int c) { return g[r][c] ? Load(g[r][c] + o) : Zero(); };
        Expand(at(0, 0), at(0, 1), at(1, 0), at(1, 1), e);
        for (int xi = 0; xi < 9; ++xi) Store(yhat + (xi * block + t) * out_depth + o, e[xi]);
      }
    }
    for (int xi = 0; xi < 9; ++xi) {
      for (int64_t i = 0; i < in_depth; i += kRows) {
        for (int64_t o = 0; o < out_depth; o += kBlock) {
          WithRows(std::min<int64_t>(kRows, in_depth - i), [&](auto rows) {
            OuterProducts<decltype(rows)::value>(v + xi * block * in_depth + i, in_depth, yhat + xi * block * out_depth + o,
                                  out_depth, count, du + (xi * in_depth + i) * out_depth + o, out_depth);
          });
        }
      }
    }
  }
  const int64_t tap = c_count * out_depth;
  for (int64_t i = 0; i < in_depth; ++i) {  // G^T dU G, into w[2u + a][2v + b][c]
    const int64_t ab = i / c_count, c = i % c_count;
    float* g = dw + (4 * (ab / 2) + ab % 2) * tap + c * out_depth;
    for (int64_t o = 0; o < out_depth; o += kLanes) {
      Vec taps[2][2];
      Contract(du + i * out_depth + o, in_depth * out_depth, taps);
      for (int u = 0; u < 2; ++u)
        for (int w = 0; w < 2; ++w) Store(g + (8 * u + 2 * w) * tap + o, taps[u][w]);
    }
  }
}
