// winograd.h's kernels, written once in simd.h's vocabulary: winograd.h includes this file
// inside winograd::avx512 and winograd::avx2, each compiled for its instruction set.
// Deliberately no include guard. The including namespace provides, besides the vocabulary,
// kRows x kVectors: the register tile of the products (tiles by kVectors * kLanes outputs).

constexpr int kBlock = kVectors * kLanes;  // output depth per product pass

// The 3x3 transformed values of four 2x2 taps g[u][v] (Winograd's G g G^T, G = [1 0; 1 1; 0 1]):
// the transformed kernel's 9 rows are the sums of each row pair, then of each column pair.
inline void TransformTaps(Vec g00, Vec g01, Vec g10, Vec g11, Vec* out) {
  const Vec rows[3][2] = {{g00, g01}, {Add(g00, g10), Add(g01, g11)}, {g10, g11}};
  for (int a = 0; a < 3; ++a) {
    out[3 * a] = rows[a][0];
    out[3 * a + 1] = Add(rows[a][0], rows[a][1]);
    out[3 * a + 2] = rows[a][1];
  }
}

// The forward pass's transformed kernel, U[xi][(a, b, c)][k] (xi = 3 alpha + beta): the 2x2
// super-kernel tap (u, v) at input group (a, b) is w[2u + a][2v + b], C x K, rows along k.
inline void TransformKernelForward(const Plan& plan, const float* w, float* u) {
  const int64_t c_count = plan.in_width, k_count = plan.out_width;  // C, K
  const int64_t in_depth = plan.in_depth(), tap = c_count * k_count;
  for (int64_t ab = 0; ab < 4; ++ab) {
    const int64_t a = ab / 2, b = ab % 2;
    for (int64_t c = 0; c < c_count; ++c) {
      const float* g = w + (4 * a + b) * tap + c * k_count;  // tap (u, v) at g + (8u + 2v) * tap
      float* row = u + (ab * c_count + c) * k_count;
      for (int64_t k = 0; k < k_count; k += kLanes) {
        Vec t[9];
        TransformTaps(Load(g + k), Load(g + 2 * tap + k), Load(g + 8 * tap + k), Load(g + 10 * tap + k), t);
        for (int xi = 0; xi < 9; ++xi) Store(row + xi * in_depth * k_count + k, t[xi]);
      }
    }
  }
}

// The input gradient's transformed kernel, U[xi][k][(a, b, c)]: the taps of the forward kernel
// flipped (u -> 1 - u) and transposed (k rows, c columns), transposed kLanes x kLanes at a time.
inline void TransformKernelBackward(const Plan& plan, const float* w, float* u) {
  const int64_t c_count = plan.out_width, k_count = plan.in_width;  // C, K
  const int64_t out_depth = plan.out_depth(), tap = c_count * k_count;
  for (int64_t ab = 0; ab < 4; ++ab) {
    const int64_t a = ab / 2, b = ab % 2;
    const float* g = w + ((2 + a) * 4 + 2 + b) * tap;  // flipped tap (u, v) at g - (8u + 2v) * tap
    for (int64_t c0 = 0; c0 < c_count; c0 += kLanes) {
      for (int64_t k0 = 0; k0 < k_count; k0 += kLanes) {
        Vec t[9][kLanes];
        for (int r = 0; r < kLanes; ++r) {
          const float* row = g + (c0 + r) * k_count + k0;
          Vec taps[9];
          TransformTaps(Load(row), Load(row - 2 * tap), Load(row - 8 * tap), Load(row - 10 * tap), taps);
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

// M[t][o] for kRowsHere tiles and kBlock outputs: the sum over `depth` inputs of V[t][i] U[i][o].
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

template <int kRowsHere = kRows>
inline void ProductTail(int rows, const float* v, int64_t depth, const float* u, int64_t u_stride, float* m,
                        int64_t m_stride) {
  if constexpr (kRowsHere > 0) {
    if (rows == kRowsHere) return Product<kRowsHere>(v, depth, u, u_stride, m, m_stride);
    ProductTail<kRowsHere - 1>(rows, v, depth, u, u_stride, m, m_stride);
  }
}

// The correlation of winograd.h's Plan, tiles in blocks: each block's inputs transformed into
// V[xi][t][in_depth], its 9 products into M[xi][t][out_depth], M transformed into the outputs.
// source(n, p, q, g) points at group g of input super-pixel (p, q) of image n, or at zeros;
// sink(n, p, q, g) at group g of output super-pixel (p, q), or is null where it is cropped.
template <typename Source, typename Sink>
void Correlate(const Plan& plan, const float* u, const Source& source, const Sink& sink) {
  const int64_t in_depth = plan.in_depth(), out_depth = plan.out_depth();
  const int64_t tile_rows = (plan.rows + 1) / 2, tile_cols = (plan.cols + 1) / 2;
  const int64_t per_image = tile_rows * tile_cols, tiles = plan.images * per_image;
  const int64_t block = plan.TilesPerBlock(kRows);
  thread_local std::vector<float> scratch;
  scratch.resize(9 * block * (in_depth + out_depth));
  float* const v = scratch.data();
  float* const m = v + 9 * block * in_depth;
  for (int64_t t0 = 0; t0 < tiles; t0 += block) {
    const int64_t count = std::min(block, tiles - t0);
    for (int64_t t = 0; t < count; ++t) {  // inputs: V = B^T d B, B^T = [1 -1 0; 0 1 0; 0 -1 1]
      const int64_t n = (t0 + t) / per_image, p0 = 2 * ((t0 + t) % per_image / tile_cols),
                    q0 = 2 * ((t0 + t) % tile_cols);
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
            float* xi_row = out + 3 * r * block * in_depth + i;
            Store(xi_row, Sub(e[r][0], e[r][1]));
            Store(xi_row + block * in_depth, e[r][1]);
            Store(xi_row + 2 * block * in_depth, Sub(e[r][2], e[r][1]));
          }
        }
      }
    }
    for (int xi = 0; xi < 9; ++xi) {
      const float* v_xi = v + xi * block * in_depth;
      const float* u_xi = u + xi * in_depth * out_depth;
      float* m_xi = m + xi * block * out_depth;
      for (int64_t o = 0; o < out_depth; o += kBlock) {
        int64_t t = 0;
        for (; t + kRows <= count; t += kRows) {
          Product<kRows>(v_xi + t * in_depth, in_depth, u_xi + o, out_depth, m_xi + t * out_depth + o, out_depth);
        }
        if (t < count) {
          ProductTail(count - t, v_xi + t * in_depth, in_depth, u_xi + o, out_depth, m_xi + t * out_depth + o,
                      out_depth);
        }
      }
    }
    for (int64_t t = 0; t < count; ++t) {  // outputs: A^T M A, A^T = [1 1 0; 0 1 1]
      const int64_t n = (t0 + t) / per_image, p0 = 2 * ((t0 + t) % per_image / tile_cols),
                    q0 = 2 * ((t0 + t) % tile_cols);
      for (int g = 0; g < plan.out_groups; ++g) {
        float* y[2][2];
        for (int r = 0; r < 2; ++r)
          for (int s = 0; s < 2; ++s) y[r][s] = sink(n, p0 + r, q0 + s, g);
        const float* in = m + t * out_depth + g * plan.out_width;
        for (int64_t o = 0; o < plan.out_width; o += kLanes) {
          Vec f[2][3];
          for (int s = 0; s < 3; ++s) {
            const Vec middle = Load(in + (3 + s) * block * out_depth + o);
            f[0][s] = Add(Load(in + s * block * out_depth + o), middle);
            f[1][s] = Add(middle, Load(in + (6 + s) * block * out_depth + o));
          }
          for (int r = 0; r < 2; ++r) {
            if (y[r][0]) Store(y[r][0] + o, Add(f[r][0], f[r][1]));
            if (y[r][1]) Store(y[r][1] + o, Add(f[r][1], f[r][2]));
          }
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
  Correlate(
      plan, u.data(),
      [&](int64_t n, int64_t p, int64_t q, int g) {
        const int64_t row = 2 * p - 1 + g / 2, col = 2 * q - 1 + g % 2;
        if (row < 0 || row >= s.in_h || col < 0 || col >= s.in_w) return zeros.data();
        return x + ((n * s.in_h + row) * s.in_w + col) * s.in_c;
      },
      [&](int64_t n, int64_t p, int64_t q, int) -> float* {
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
      [&](int64_t n, int64_t p, int64_t q, int) {
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
