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
//
// Attributes: stride_h, stride_w, pad_top, pad_left (low padding). The high
// padding follows from the shapes. Primitives are built once per shape and
// cached; oneDNN's just-in-time kernel generation costs milliseconds.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <stdexcept>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

enum class Direction { kForward, kBackwardData, kBackwardWeights };

// Geometry of one convolution, in oneDNN's logical order (N, C, H, W / O, I, KH, KW).
struct Geometry {
  memory::dims src, weights, dst, strides, padding_l, padding_r;
  memory::data_type type;

  auto key() const { return std::tie(src, weights, dst, strides, padding_l, padding_r, type); }
  bool operator<(const Geometry& other) const { return key() < other.key(); }
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Activations(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::nhwc}; }
memory::desc AnyLayout(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::any}; }
memory::desc HWIO(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::hwio}; }

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return {Engine(),
          dnnl::prop_kind::forward_training,
          dnnl::algorithm::convolution_direct,
          Activations(g.src, g.type),
          AnyLayout(g.weights, g.type),
          Activations(g.dst, g.type),
          g.strides,
          g.padding_l,
          g.padding_r};
}

// One cached primitive with the kernel layout it expects.
struct Cached {
  dnnl::primitive primitive;
  memory::desc kernel_desc;  // weights (forward, backward data) or diff_weights (backward weights)
};

Cached Build(const Geometry& g, Direction direction) {
  auto forward = ForwardDesc(g);
  switch (direction) {
    case Direction::kForward:
      return {dnnl::convolution_forward(forward), forward.weights_desc()};
    case Direction::kBackwardData: {
      dnnl::convolution_backward_data::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.type), AnyLayout(g.weights, g.type),
          Activations(g.dst, g.type), g.strides, g.padding_l, g.padding_r, forward);
      return {dnnl::convolution_backward_data(pd), pd.weights_desc()};
    }
    case Direction::kBackwardWeights: {
      dnnl::convolution_backward_weights::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.type), AnyLayout(g.weights, g.type),
          Activations(g.dst, g.type), g.strides, g.padding_l, g.padding_r, forward);
      return {dnnl::convolution_backward_weights(pd), pd.diff_weights_desc()};
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

Geometry MakeGeometry(ffi::AnyBuffer::Dimensions src, ffi::AnyBuffer::Dimensions kernel,
                      ffi::AnyBuffer::Dimensions dst, ffi::DataType type, int64_t stride_h, int64_t stride_w,
                      int64_t pad_top, int64_t pad_left) {
  Geometry g;
  g.src = ActivationDims(src);
  g.weights = KernelDims(kernel);
  g.dst = ActivationDims(dst);
  g.strides = {stride_h, stride_w};
  g.padding_l = {pad_top, pad_left};
  // High padding: the last window must end exactly at (in + pad_l + pad_r - k).
  g.padding_r = {(g.dst[2] - 1) * stride_h + g.weights[2] - g.src[2] - pad_top,
                 (g.dst[3] - 1) * stride_w + g.weights[3] - g.src[3] - pad_left};
  g.type = DataType(type);
  return g;
}

memory Wrap(const memory::desc& desc, void* data) { return memory(desc, Engine(), data); }

// Runs `direction` of the convolution; `kernel` is the user's HWIO buffer (read
// for forward and backward data, written for backward weights).
ffi::Error Run(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  try {
    const Cached& cached = Lookup(g, direction);
    dnnl::stream stream(Engine());
    memory src_mem = Wrap(Activations(g.src, g.type), src);
    memory dst_mem = Wrap(Activations(g.dst, g.type), dst);
    memory user_kernel = Wrap(HWIO(g.weights, g.type), kernel);
    memory kernel_mem =
        cached.kernel_desc == user_kernel.get_desc() ? user_kernel : memory(cached.kernel_desc, Engine());
    const bool reorder = kernel_mem != user_kernel;
    switch (direction) {
      case Direction::kForward:
        if (reorder) dnnl::reorder(user_kernel, kernel_mem).execute(stream, user_kernel, kernel_mem);
        cached.primitive.execute(
            stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, kernel_mem}, {DNNL_ARG_DST, dst_mem}});
        break;
      case Direction::kBackwardData:
        if (reorder) dnnl::reorder(user_kernel, kernel_mem).execute(stream, user_kernel, kernel_mem);
        cached.primitive.execute(
            stream, {{DNNL_ARG_DIFF_SRC, src_mem}, {DNNL_ARG_WEIGHTS, kernel_mem}, {DNNL_ARG_DIFF_DST, dst_mem}});
        break;
      case Direction::kBackwardWeights:
        cached.primitive.execute(
            stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DIFF_WEIGHTS, kernel_mem}, {DNNL_ARG_DIFF_DST, dst_mem}});
        if (reorder) dnnl::reorder(kernel_mem, user_kernel).execute(stream, kernel_mem, user_kernel);
        break;
    }
    stream.wait();
    return ffi::Error::Success();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + e.what());
  }
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y, int64_t stride_h,
                   int64_t stride_w, int64_t pad_top, int64_t pad_left) {
  try {
    Geometry g = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(), x.element_type(), stride_h, stride_w,
                              pad_top, pad_left);
    return Run(Direction::kForward, g, x.untyped_data(), w.untyped_data(), y->untyped_data());
  } catch (const std::exception& e) {
    return ffi::Error::InvalidArgument(e.what());
  }
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx, int64_t stride_h,
                        int64_t stride_w, int64_t pad_top, int64_t pad_left) {
  try {
    Geometry g = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), dy.element_type(), stride_h,
                              stride_w, pad_top, pad_left);
    return Run(Direction::kBackwardData, g, dx->untyped_data(), w.untyped_data(), dy.untyped_data());
  } catch (const std::exception& e) {
    return ffi::Error::InvalidArgument(e.what());
  }
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw, int64_t stride_h,
                           int64_t stride_w, int64_t pad_top, int64_t pad_left) {
  try {
    Geometry g = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), x.element_type(), stride_h,
                              stride_w, pad_top, pad_left);
    return Run(Direction::kBackwardWeights, g, x.untyped_data(), dw->untyped_data(), dy.untyped_data());
  } catch (const std::exception& e) {
    return ffi::Error::InvalidArgument(e.what());
  }
}

// All three handlers take two arrays and four integer attributes and return one array.
auto ConvBinding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_left");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_forward, Forward,
                              ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_backward_data, BackwardData,
                              ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_onednn_conv2d_backward_weights, BackwardWeights,
                              ConvBinding());
