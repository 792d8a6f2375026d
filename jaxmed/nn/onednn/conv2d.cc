// oneDNN 2-D convolution for XLA:CPU, exposed to JAX as three typed FFI handlers.
//
// Why: XLA:CPU's own convolution kernels run the dcgan128 layers at 5-80 % of a
// float32 matmul on the same machine (worst for the stride-2 gradients), while
// oneDNN (what PyTorch and TensorFlow use on CPU) runs them near the matmul rate.
//
// Layouts are JAX's: activations NHWC, kernels HWIO, both dense row-major. The
// activations are handed to oneDNN as they are ("nhwc" is a native oneDNN
// layout); the kernel is reordered into whatever blocked layout the chosen
// implementation wants (kernels are small, activations are not).
//
//   jaxmed_onednn_conv2d_forward          y  = conv(x, w)
//   jaxmed_onednn_conv2d_backward_data    dx = conv^T(dy, w)     (also: transposed conv)
//   jaxmed_onednn_conv2d_backward_weights dw = d conv / dw (x, dy)
//   jaxmed_channel_sums                   [sum(a), sum(a * b)] per channel (BatchNorm's sums)
//
// Attributes: stride_h, stride_w, pad_top, pad_left (low padding). The high
// padding follows from the shapes. Operands are float32, or bfloat16 with a
// bfloat16 or float32 result (forward y, backward-data dx): bfloat16 inputs to the
// AMX kernels, float32 outputs for the float32 normalisation that follows.
// Primitives are built once per shape and cached; oneDNN's just-in-time kernel
// generation costs milliseconds. Float32 stride-1 calls with at most 4 output
// channels (the sub-pixel form of 1-channel layers), forward and backward
// weights, run narrow_conv.h's kernels instead, where oneDNN is slow.

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "narrow_conv.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

enum class Direction { kForward, kBackwardData, kBackwardWeights };

// Geometry of one convolution, in oneDNN's logical order (N, C, H, W / O, I, KH, KW).
// The types are those of the user's arrays: src (x or dx), weights (w or dw), dst (y or dy).
struct Geometry {
  memory::dims src, weights, dst, strides, padding_l, padding_r;
  memory::data_type src_type, weights_type, dst_type;

  auto key() const {
    return std::tie(src, weights, dst, strides, padding_l, padding_r, src_type, weights_type, dst_type);
  }
  bool operator<(const Geometry& other) const { return key() < other.key(); }
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Activations(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::nhwc}; }
memory::desc AnyLayout(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::any}; }
memory::desc HWIO(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::hwio}; }

// Each execution brings its own scratchpad: the library's shared one is not safe when
// two threads run the same primitive at once, as the batch parts do.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, memory::data_type src_type,
                                                      memory::data_type weights_type, memory::data_type dst_type) {
  return {Engine(),
          dnnl::prop_kind::forward_training,
          dnnl::algorithm::convolution_direct,
          Activations(g.src, src_type),
          AnyLayout(g.weights, weights_type),
          Activations(g.dst, dst_type),
          g.strides,
          g.padding_l,
          g.padding_r,
          UserScratchpad()};
}

// One cached primitive with the kernel layout it expects.
struct Cached {
  dnnl::primitive primitive;
  memory::desc kernel_desc;  // weights (forward, backward data) or diff_weights (backward weights)
  memory::desc scratchpad_desc;
};

// The backward primitives take a forward descriptor as a hint; it is given the operands' type.
Cached Build(const Geometry& g, Direction direction) {
  switch (direction) {
    case Direction::kForward: {
      auto forward = ForwardDesc(g, g.src_type, g.weights_type, g.dst_type);
      return {dnnl::convolution_forward(forward), forward.weights_desc(), forward.scratchpad_desc()};
    }
    case Direction::kBackwardData: {
      auto hint = ForwardDesc(g, g.weights_type, g.weights_type, g.dst_type);
      dnnl::convolution_backward_data::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.src_type),
          AnyLayout(g.weights, g.weights_type), Activations(g.dst, g.dst_type), g.strides, g.padding_l, g.padding_r,
          hint, UserScratchpad());
      return {dnnl::convolution_backward_data(pd), pd.weights_desc(), pd.scratchpad_desc()};
    }
    case Direction::kBackwardWeights: {
      auto hint = ForwardDesc(g, g.src_type, g.src_type, g.dst_type);
      dnnl::convolution_backward_weights::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.src_type),
          AnyLayout(g.weights, memory::data_type::f32), Activations(g.dst, g.dst_type), g.strides, g.padding_l,
          g.padding_r, hint, UserScratchpad());
      return {dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(), pd.scratchpad_desc()};
    }
  }
  throw std::logic_error("unknown direction");
}

const Cached& Lookup(const Geometry& g, Direction direction) {
  static std::mutex mutex;
  static std::map<std::pair<Geometry, Direction>, std::unique_ptr<Cached>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[{g, direction}];
  if (!slot) slot = std::make_unique<Cached>(Build(g, direction));
  return *slot;
}

memory::data_type DataType(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F32:
      return memory::data_type::f32;
    case ffi::DataType::BF16:
      return memory::data_type::bf16;
    default:
      throw std::invalid_argument("oneDNN convolution supports float32 and bfloat16 only");
  }
}

// NHWC dims from XLA -> oneDNN's logical NCHW order.
memory::dims ActivationDims(ffi::AnyBuffer::Dimensions d) { return {d[0], d[3], d[1], d[2]}; }
// HWIO dims from XLA -> oneDNN's logical OIHW order.
memory::dims KernelDims(ffi::AnyBuffer::Dimensions d) { return {d[3], d[2], d[0], d[1]}; }

Geometry MakeGeometry(const ffi::AnyBuffer& src, const ffi::AnyBuffer& kernel, const ffi::AnyBuffer& dst,
                      int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left) {
  Geometry g;
  g.src = ActivationDims(src.dimensions());
  g.weights = KernelDims(kernel.dimensions());
  g.dst = ActivationDims(dst.dimensions());
  g.strides = {stride_h, stride_w};
  g.padding_l = {pad_top, pad_left};
  // High padding: the last window must end exactly at (in + pad_l + pad_r - k).
  g.padding_r = {(g.dst[2] - 1) * stride_h + g.weights[2] - g.src[2] - pad_top,
                 (g.dst[3] - 1) * stride_w + g.weights[3] - g.src[3] - pad_left};
  g.src_type = DataType(src.element_type());
  g.weights_type = DataType(kernel.element_type());
  g.dst_type = DataType(dst.element_type());
  return g;
}

memory Wrap(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

// Bytes of one image (H * W * C elements) of NCHW-ordered logical dims.
int64_t RowBytes(const memory::dims& dims, memory::data_type type) {
  return dims[1] * dims[2] * dims[3] * (type == memory::data_type::f32 ? 4 : 2);
}

// Runs the call with narrow_conv.h instead of oneDNN where that applies (float32, stride 1,
// forward or backward weights, at most 4 output channels: the 1-channel layers' sub-pixel
// form) and returns whether it did.
bool RunNarrow(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  const auto f32 = memory::data_type::f32;
  if (direction == Direction::kBackwardData || g.src_type != f32 || g.dst_type != f32 ||
      (direction == Direction::kForward && g.weights_type != f32) || g.strides != memory::dims{1, 1}) {
    return false;
  }
  // From oneDNN's logical order: activations N, C, H, W; kernels O, I, KH, KW.
  const narrow_conv::Shape shape{g.src[0],     g.src[2],     g.src[3],       g.src[1],      g.dst[2], g.dst[3], g.dst[1],
                                 g.weights[2], g.weights[3], g.padding_l[0], g.padding_l[1]};
  if (!narrow_conv::Supported(shape)) return false;
  if (direction == Direction::kForward) {
    narrow_conv::Forward(shape, static_cast<const float*>(src), static_cast<const float*>(kernel),
                         static_cast<float*>(dst));
  } else {
    narrow_conv::BackwardWeights(shape, static_cast<const float*>(src), static_cast<const float*>(dst),
                                 static_cast<float*>(kernel));
  }
  return true;
}

// Runs `direction` on the g.src[0] rows the pointers start at. `kernel` is HWIO: the
// user's kernel (read) for forward and backward data, this part's float32 gradient
// (written) for backward weights.
void RunRows(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  if (RunNarrow(direction, g, src, kernel, dst)) return;
  const Cached& cached = Lookup(g, direction);
  const auto kernel_type = direction == Direction::kBackwardWeights ? memory::data_type::f32 : g.weights_type;
  dnnl::stream stream(Engine());
  memory src_mem = Wrap(Activations(g.src, g.src_type), src);
  memory dst_mem = Wrap(Activations(g.dst, g.dst_type), dst);
  memory user_kernel = Wrap(HWIO(g.weights, kernel_type), kernel);
  memory kernel_mem =
      cached.kernel_desc == user_kernel.get_desc() ? user_kernel : memory(cached.kernel_desc, Engine());
  const bool reorder = kernel_mem != user_kernel;
  memory scratchpad(cached.scratchpad_desc, Engine());
  switch (direction) {
    case Direction::kForward:
      if (reorder) dnnl::reorder(user_kernel, kernel_mem).execute(stream, user_kernel, kernel_mem);
      cached.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, kernel_mem},
                                        {DNNL_ARG_DST, dst_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kBackwardData:
      if (reorder) dnnl::reorder(user_kernel, kernel_mem).execute(stream, user_kernel, kernel_mem);
      cached.primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, src_mem}, {DNNL_ARG_WEIGHTS, kernel_mem},
                                        {DNNL_ARG_DIFF_DST, dst_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kBackwardWeights:
      cached.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DIFF_WEIGHTS, kernel_mem},
                                        {DNNL_ARG_DIFF_DST, dst_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (reorder) dnnl::reorder(kernel_mem, user_kernel).execute(stream, kernel_mem, user_kernel);
      break;
  }
  stream.wait();
}

// Partitioning: one part of the batch per thread of XLA's intra-op pool, each run by
// oneDNN on one thread. Why: oneDNN's own OpenMP team would add threads beside XLA's,
// which meanwhile run independent fusions; on 2 cores the 3-4 busy threads made the
// dcgan128 step's convolutions use 307 ms of thread time instead of 209 ms alone.
// Parts are claimed from a counter, so the calling thread runs every part that no pool
// thread has picked up: nothing waits for a busy pool.
struct Parts {
  explicit Parts(int count) : count(count) {}
  const int count;
  std::atomic<int> next{0};
  std::mutex mutex;
  std::condition_variable finished;
  int done = 0;
  std::exception_ptr error;
};

// oneDNN (OpenMP build) runs a primitive on omp_get_max_threads() threads: one, here.
struct OneOpenMpThread {
  const int previous = omp_get_max_threads();
  OneOpenMpThread() { omp_set_num_threads(1); }
  ~OneOpenMpThread() { omp_set_num_threads(previous); }
};

// Calls body(first_row, rows, part) for `count` parts of `batch` rows, spread over `pool`.
template <typename Body>
void RunInParts(ffi::ThreadPool& pool, int64_t batch, int count, const Body& body) {
  auto parts = std::make_shared<Parts>(count);
  auto work = [parts, batch, &body]() {
    for (int part; (part = parts->next.fetch_add(1)) < parts->count;) {
      const int64_t first = batch * part / parts->count, end = batch * (part + 1) / parts->count;
      std::exception_ptr error;
      try {
        OneOpenMpThread one_thread;
        body(first, end - first, part);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(parts->mutex);
      if (error && !parts->error) parts->error = error;
      if (++parts->done == parts->count) parts->finished.notify_all();
    }
  };
  for (int i = 1; i < count; ++i) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(parts->mutex);
  parts->finished.wait(lock, [&] { return parts->done == parts->count; });
  if (parts->error) std::rethrow_exception(parts->error);
}

int PartCount(ffi::ThreadPool& pool, int64_t batch) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), batch)));
}

Geometry Rows(Geometry g, int64_t rows) {
  g.src[0] = g.dst[0] = rows;
  return g;
}

// Forward (src = x, dst = y) or backward data (src = dx, dst = dy), partitioned by rows.
ffi::Error RunActivations(ffi::ThreadPool& pool, Direction direction, const Geometry& g, char* src, void* kernel,
                          char* dst) {
  const int64_t src_row = RowBytes(g.src, g.src_type), dst_row = RowBytes(g.dst, g.dst_type);
  RunInParts(pool, g.src[0], PartCount(pool, g.src[0]), [&](int64_t first, int64_t rows, int) {
    RunRows(direction, Rows(g, rows), src + first * src_row, kernel, dst + first * dst_row);
  });
  return ffi::Error::Success();
}

// Backward weights: each part's float32 gradient, summed, then stored in the kernel's dtype.
ffi::Error RunWeights(ffi::ThreadPool& pool, const Geometry& g, char* src, void* kernel, char* dst) {
  const int64_t src_row = RowBytes(g.src, g.src_type), dst_row = RowBytes(g.dst, g.dst_type);
  const int count = PartCount(pool, g.src[0]);
  const size_t size = g.weights[0] * g.weights[1] * g.weights[2] * g.weights[3];
  std::vector<std::vector<float>> partials(count, std::vector<float>(size));
  RunInParts(pool, g.src[0], count, [&](int64_t first, int64_t rows, int part) {
    RunRows(Direction::kBackwardWeights, Rows(g, rows), src + first * src_row, partials[part].data(),
            dst + first * dst_row);
  });
  for (int part = 1; part < count; ++part) {
    for (size_t i = 0; i < size; ++i) partials[0][i] += partials[part][i];
  }
  dnnl::stream stream(Engine());
  memory sum = Wrap(HWIO(g.weights, memory::data_type::f32), partials[0].data());
  memory user = Wrap(HWIO(g.weights, g.weights_type), kernel);
  dnnl::reorder(sum, user).execute(stream, sum, user);  // a copy for float32, rounding for bfloat16
  stream.wait();
  return ffi::Error::Success();
}

template <typename F>
ffi::Error Guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string(what) + ": " + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::InvalidArgument(std::string(what) + ": " + e.what());
  }
}

// Per-channel [sum(a), sum(a * b)] of two (rows, channels) float32 arrays in one read of
// each: BatchNorm's statistics (a = b = x) and gradient sums (a = dy, b = x). XLA makes
// each sum its own reduction over the activations, 1.4-1.6 ms apiece for (32, 64, 64, 32)
// inside the dcgan128 step. Sums run in float32 over blocks of 256 rows, then in double.
constexpr int64_t kSumBlockRows = 256;

__attribute__((target("avx512f"))) void SumRowsAvx512(const float* a, const float* b, int64_t rows,
                                                      int64_t channels, float* s0, float* s1) {
  for (int64_t r = 0; r < rows; ++r, a += channels, b += channels) {
    int64_t c = 0;
    for (; c + 16 <= channels; c += 16) {
      const __m512 va = _mm512_loadu_ps(a + c), vb = _mm512_loadu_ps(b + c);
      _mm512_storeu_ps(s0 + c, _mm512_add_ps(_mm512_loadu_ps(s0 + c), va));
      _mm512_storeu_ps(s1 + c, _mm512_fmadd_ps(va, vb, _mm512_loadu_ps(s1 + c)));
    }
    for (; c < channels; ++c) s0[c] += a[c], s1[c] += a[c] * b[c];
  }
}

void SumRows(const float* a, const float* b, int64_t rows, int64_t channels, float* s0, float* s1) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return SumRowsAvx512(a, b, rows, channels, s0, s1);
  for (int64_t r = 0; r < rows; ++r, a += channels, b += channels) {
    for (int64_t c = 0; c < channels; ++c) s0[c] += a[c], s1[c] += a[c] * b[c];
  }
}

ffi::Error ChannelSums(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> sums,
                       ffi::ThreadPool pool) {
  return Guarded("channel sums", [&] {
    const int64_t channels = a.dimensions().back(), rows = a.element_count() / channels;
    if (b.element_count() != a.element_count() || sums->element_count() != 2 * channels) {
      return ffi::Error::InvalidArgument("channel sums: a, b and the (2, channels) result do not match");
    }
    const int count = PartCount(pool, rows);
    std::vector<std::vector<double>> partials(count, std::vector<double>(2 * channels));
    RunInParts(pool, rows, count, [&](int64_t first, int64_t part_rows, int part) {
      std::vector<float> block(2 * channels);
      std::vector<double>& total = partials[part];
      for (int64_t r = 0; r < part_rows; r += kSumBlockRows) {
        std::fill(block.begin(), block.end(), 0.0f);
        const int64_t offset = (first + r) * channels;
        SumRows(a.typed_data() + offset, b.typed_data() + offset, std::min(kSumBlockRows, part_rows - r), channels,
                block.data(), block.data() + channels);
        for (int64_t i = 0; i < 2 * channels; ++i) total[i] += block[i];
      }
    });
    for (int64_t i = 0; i < 2 * channels; ++i) {
      double sum = 0.0;
      for (const auto& partial : partials) sum += partial[i];
      sums->typed_data()[i] = static_cast<float>(sum);
    }
    return ffi::Error::Success();
  });
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y, int64_t stride_h,
                   int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  return Guarded("oneDNN convolution forward", [&] {
    Geometry g = MakeGeometry(x, w, *y, stride_h, stride_w, pad_top, pad_left);
    return RunActivations(pool, Direction::kForward, g, static_cast<char*>(x.untyped_data()), w.untyped_data(),
                          static_cast<char*>(y->untyped_data()));
  });
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx, int64_t stride_h,
                        int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  return Guarded("oneDNN convolution backward data", [&] {
    Geometry g = MakeGeometry(*dx, w, dy, stride_h, stride_w, pad_top, pad_left);
    return RunActivations(pool, Direction::kBackwardData, g, static_cast<char*>(dx->untyped_data()),
                          w.untyped_data(), static_cast<char*>(dy.untyped_data()));
  });
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw, int64_t stride_h,
                           int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  return Guarded("oneDNN convolution backward weights", [&] {
    Geometry g = MakeGeometry(x, *dw, dy, stride_h, stride_w, pad_top, pad_left);
    return RunWeights(pool, g, static_cast<char*>(x.untyped_data()), dw->untyped_data(),
                      static_cast<char*>(dy.untyped_data()));
  });
}

// All three handlers take two arrays and four integer attributes, return one array, and use XLA's pool.
auto ConvBinding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_left")
      .Ctx<ffi::ThreadPool>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_forward, Forward,
                              ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_backward_data, BackwardData,
                              ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_backward_weights, BackwardWeights,
                              ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_channel_sums, ChannelSums,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ctx<ffi::ThreadPool>());
