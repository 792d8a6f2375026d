// oneDNN 2-D convolution for XLA:CPU, exposed to JAX as three typed FFI handlers.
//
// Why: XLA:CPU's own convolution kernels run the dcgan128 layers far below the rate
// of a float32 matmul (worst for the stride-2 gradients), while oneDNN (what PyTorch
// and TensorFlow use on CPU) runs them near it.
//
// Layouts are JAX's: activations NHWC, kernels HWIO, both dense row-major. The
// activations are handed to oneDNN as they are ("nhwc" is a native oneDNN
// layout); the kernel is reordered into whatever blocked layout the chosen
// implementation wants (kernels are small, activations are not).
//
//   jaxmed_onednn_conv2d_forward          y  = conv(x, w)
//   jaxmed_onednn_conv2d_backward_data    dx = conv^T(dy, w)     (also: transposed conv)
//   jaxmed_onednn_conv2d_backward_weights dw = d conv / dw (x, dy)
//   jaxmed_channel_sums                   [sum(a), sum(a * b)] per channel (BatchNorm's sums),
//                                         or per image and channel (GroupNorm's)
//   jaxmed_max_pool_forward               y, where = max pooling and its argmax (max_pool.h)
//   jaxmed_max_pool_backward              dx = its gradient
//
// Attributes: stride_h, stride_w, pad_top, pad_left (low padding). The high
// padding follows from the shapes. Operands are float32, or bfloat16 with a
// bfloat16 or float32 result (forward y, backward-data dx): bfloat16 inputs to the
// AMX kernels, float32 outputs for the float32 normalisation that follows.
// Primitives are built once per shape and cached; oneDNN's just-in-time kernel
// generation costs milliseconds. The input gradients of the 4x4 stride-2 image
// layers (at most 4 input channels) run in sub-pixel form (RunSubpixel), and
// float32 stride-1 calls with at most 4 output channels, forward and backward
// weights, run narrow_conv.h's kernels: where oneDNN is slow. Float32 4x4 stride-2 layers
// and 3x3 stride-1 "SAME" ones run jaxmed's Winograd kernels where they need fewer
// multiplications than oneDNN's direct ones (RunWinograd: winograd.h, winograd_3x3.h);
// bfloat16 operands keep oneDNN. Where oneDNN has no
// bfloat16 kernels (AVX2 CPUs), bfloat16 calls run in float32 (RunInFloat32).

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "max_pool.h"
#include "narrow_conv.h"
#include "weight_gradient.h"
#include "winograd.h"
#include "winograd_3x3.h"
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
memory::desc HWIO(const memory::dims& dims, memory::data_type type) { return {dims, type, tag::hwio}; }

// Each execution brings its own scratchpad: the library's shared one is not safe when
// two threads run the same primitive at once, as the batch parts do.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, memory::data_type src_type,
                                                      memory::data_type weights_type, memory::data_type dst_type,
                                                      tag kernel_layout = tag::any) {
  return {Engine(),
          dnnl::prop_kind::forward_training,
          dnnl::algorithm::convolution_direct,
          Activations(g.src, src_type),
          memory::desc(g.weights, weights_type, kernel_layout),
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

// `direction`'s descriptor with the kernel in `kernel_layout` (tag::any: oneDNN's choice).
// The backward primitives take a forward descriptor as a hint; it is given the operands' type.
dnnl::primitive_desc Describe(const Geometry& g, Direction direction, tag kernel_layout) {
  switch (direction) {
    case Direction::kForward:
      return ForwardDesc(g, g.src_type, g.weights_type, g.dst_type, kernel_layout);
    case Direction::kBackwardData:
      return dnnl::convolution_backward_data::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.src_type),
          memory::desc(g.weights, g.weights_type, kernel_layout), Activations(g.dst, g.dst_type), g.strides,
          g.padding_l, g.padding_r, ForwardDesc(g, g.weights_type, g.weights_type, g.dst_type), UserScratchpad());
    case Direction::kBackwardWeights:
      return dnnl::convolution_backward_weights::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, Activations(g.src, g.src_type),
          memory::desc(g.weights, memory::data_type::f32, kernel_layout), Activations(g.dst, g.dst_type),
          g.strides, g.padding_l, g.padding_r, ForwardDesc(g, g.src_type, g.src_type, g.dst_type),
          UserScratchpad());
  }
  throw std::logic_error("unknown direction");
}

// The primitive takes the user's HWIO kernel as it is when oneDNN picks the same implementation
// for it as for its own preferred (blocked) layout; else the kernel is reordered on every call.
// oneDNN 3.2's forward kernels (brgconv) take HWIO at full speed; for the input and weight
// gradients only its gemm kernels do, so those directions keep the reorder.
Cached Build(const Geometry& g, Direction direction) {
  dnnl::primitive_desc pd = Describe(g, direction, tag::any);
  try {
    dnnl::primitive_desc as_is = Describe(g, direction, tag::hwio);
    if (std::string(as_is.impl_info_str()) == pd.impl_info_str()) pd = as_is;
  } catch (const dnnl::error&) {
    // no implementation takes the kernel as it is
  }
  const auto kernel = direction == Direction::kBackwardWeights ? dnnl::query::diff_weights_md : dnnl::query::weights_md;
  return {dnnl::primitive(pd), pd.query_md(kernel), pd.scratchpad_desc()};
}

bool HasBfloat16(const Geometry& g) {
  const auto bf16 = memory::data_type::bf16;
  return g.src_type == bf16 || g.weights_type == bf16 || g.dst_type == bf16;
}

// The cached primitive of a geometry, or null where oneDNN has no implementation of its
// bfloat16 operands on this CPU (oneDNN 3.2 has them for AVX-512, not for AVX2-only CPUs):
// RunRows then computes it in float32. Any other failure to build one is an error.
const Cached* Lookup(const Geometry& g, Direction direction) {
  static std::mutex mutex;
  static std::map<std::pair<Geometry, Direction>, std::unique_ptr<Cached>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const auto [slot, inserted] = cache.try_emplace({g, direction});
  if (inserted) {
    try {
      slot->second = std::make_unique<Cached>(Build(g, direction));
    } catch (const dnnl::error&) {
      if (!HasBfloat16(g)) {
        cache.erase(slot);
        throw;
      }
    }
  }
  return slot->second.get();
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

int64_t ElementBytes(memory::data_type type) { return type == memory::data_type::f32 ? 4 : 2; }

// Bytes of one image (H * W * C elements) of NCHW-ordered logical dims.
int64_t RowBytes(const memory::dims& dims, memory::data_type type) {
  return dims[1] * dims[2] * dims[3] * ElementBytes(type);
}

// The call as jaxmed's own kernels take it.
jaxmed::ConvShape ShapeOf(const Geometry& g) {
  // From oneDNN's logical order: activations N, C, H, W; kernels O, I, KH, KW.
  return {g.src[0],     g.src[2],     g.src[3],     g.src[1],     g.dst[2],       g.dst[3],      g.dst[1],
          g.weights[2], g.weights[3], g.strides[0], g.strides[1], g.padding_l[0], g.padding_l[1]};
}

// Runs the call with narrow_conv.h instead of oneDNN where that applies (float32, stride 1,
// forward or backward weights, at most 4 output channels: the 1-channel layers' sub-pixel
// form) and returns whether it did.
bool RunNarrow(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  const auto f32 = memory::data_type::f32;
  if (direction == Direction::kBackwardData || g.src_type != f32 || g.dst_type != f32 ||
      (direction == Direction::kForward && g.weights_type != f32)) {
    return false;
  }
  const jaxmed::ConvShape shape = ShapeOf(g);
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

// Runs a float32 weight gradient with weight_gradient.h's kernels where they apply and
// winograd.h's do not: on CPUs whose widest kernels are AVX2 (on AVX-512 oneDNN's kernel is
// fast), output channels in 8s, input channels in 4s or just one. Returns whether it did.
bool RunWeightGradient(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  const auto f32 = memory::data_type::f32;
  if (direction != Direction::kBackwardWeights || g.src_type != f32 || g.dst_type != f32 ||
      jaxmed::simd::BestIsa() != jaxmed::simd::Isa::kAvx2) {
    return false;
  }
  const jaxmed::ConvShape shape = ShapeOf(g);
  const auto x = static_cast<const float*>(src), dy = static_cast<const float*>(dst);
  const auto dw = static_cast<float*>(kernel);
  if (weight_gradient::SupportedOneChannel(shape)) {
    weight_gradient::BackwardWeightsOneChannel(shape, x, dy, dw);
  } else if (weight_gradient::Supported(shape)) {
    weight_gradient::BackwardWeights(shape, x, dy, dw);
  } else {
    return false;
  }
  return true;
}

winograd::Pass PassOf(Direction direction) {
  switch (direction) {
    case Direction::kForward:
      return winograd::Pass::kForward;
    case Direction::kBackwardData:
      return winograd::Pass::kBackwardData;
    case Direction::kBackwardWeights:
      return winograd::Pass::kBackwardWeights;
  }
  throw std::logic_error("unknown direction");
}

// Runs a float32 4x4 stride-2 layer with winograd.h's kernels, or a 3x3 stride-1 one with
// winograd_3x3.h's where its rule (winograd::Use3x3) picks them (fewer multiplications than
// oneDNN's direct ones, and than weight_gradient.h's). bfloat16 operands keep oneDNN. Returns
// whether it did.
bool RunWinograd(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  const auto f32 = memory::data_type::f32;
  // (A weight gradient's kernel operand is its part's float32 sum whatever the user's dtype.)
  if (g.src_type != f32 || g.dst_type != f32 || (direction != Direction::kBackwardWeights && g.weights_type != f32)) {
    return false;
  }
  const jaxmed::ConvShape shape = ShapeOf(g);
  const bool three = winograd::Use3x3(shape, PassOf(direction));
  if (!three && !winograd::Supported(shape, direction == Direction::kBackwardData)) return false;
  const auto x = static_cast<float*>(src), w = static_cast<float*>(kernel), y = static_cast<float*>(dst);
  switch (direction) {
    case Direction::kForward:
      three ? winograd::Forward3x3(shape, x, w, y) : winograd::Forward(shape, x, w, y);
      break;
    case Direction::kBackwardData:
      three ? winograd::BackwardData3x3(shape, y, w, x) : winograd::BackwardData(shape, y, w, x);
      break;
    case Direction::kBackwardWeights:
      three ? winograd::BackwardWeights3x3(shape, x, y, w) : winograd::BackwardWeights(shape, x, y, w);
      break;
  }
  return true;
}

void RunRows(Direction direction, const Geometry& g, void* src, void* kernel, void* dst);

// Sub-pixel input gradients of the image layers: 4x4 stride-2 convolutions with low padding
// 1 and at most 4 input channels (the discriminator's first layer; the generator's last is
// this gradient as a transposed convolution), which oneDNN's backward-data kernel runs
// far below memory speed. Each phase (row parity a,
// column parity b) of dx is a 2x2 correlation of dy, padded by one, with the taps w[a::2, b::2]
// of the flipped kernel (jaxmed/nn/subpixel.py derives it), so one stride-1 convolution with
// the four phases as 4 C output channels gives all of dx at the (H + 1) x (W + 1) window starts.
// For one float32 channel narrow_conv.h's kernel stores each phase straight into dx
// (ForwardSubpixel, saving the buffer and the interleave below); otherwise oneDNN's runs
// over the whole part into a buffer, and the phases are interleaved from there into dx
// (image by image, with the buffer in cache, was no faster).
constexpr int64_t kSubpixelMaxChannels = 4;

// Copies the window starts' phase pairs of one dx row: pixel pairs (2q - 1, 2q) of the row are
// slot pair q (kPixelBytes per pixel, 0: pixel_bytes), cropped to columns [0, width).
template <int kPixelBytes>
void InterleaveRow(const char* pairs, int64_t pair_stride, int64_t starts, int64_t width, int64_t pixel_bytes,
                   char* row) {
  const int64_t bytes = kPixelBytes ? kPixelBytes : pixel_bytes;
  std::memcpy(row, pairs + bytes, bytes);  // start 0: its first column is outside dx
  int64_t q = 1;
  for (; 2 * q < width; ++q) std::memcpy(row + (2 * q - 1) * bytes, pairs + q * pair_stride, 2 * bytes);
  if (2 * q - 1 < width && q < starts) std::memcpy(row + (2 * q - 1) * bytes, pairs + q * pair_stride, bytes);
}

bool RunSubpixel(const Geometry& g, char* dx, const char* kernel, const char* dy) {
  if (g.weights[2] != 4 || g.weights[3] != 4 || g.strides != memory::dims{2, 2} ||
      g.padding_l != memory::dims{1, 1} || g.src[1] > kSubpixelMaxChannels) {
    return false;
  }
  const int64_t images = g.src[0], channels = g.src[1], dy_channels = g.dst[1];
  const int64_t starts_h = g.dst[2] + 1, starts_w = g.dst[3] + 1;
  Geometry phases = g;
  phases.src = {images, dy_channels, g.dst[2], g.dst[3]};
  phases.weights = {4 * channels, dy_channels, 2, 2};
  phases.dst = {images, 4 * channels, starts_h, starts_w};
  phases.strides = {1, 1};
  phases.padding_l = phases.padding_r = {1, 1};
  phases.src_type = g.dst_type;
  phases.dst_type = g.src_type;
  // HWIO (2, 2, C_dy, a', b', C) from w's (4, 4, C, C_dy): tap (t, u) of the phase at slot
  // (a', b') is w[2 - 2t + a', 2 - 2u + b'] (flipped; phase a sits at slot a' = 1 - a).
  const int64_t weight_bytes = ElementBytes(g.weights_type);
  std::vector<char> phase_kernel(16 * channels * dy_channels * weight_bytes);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t u = 0; u < 2; ++u)
      for (int64_t o = 0; o < dy_channels; ++o)
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b)
            for (int64_t c = 0; c < channels; ++c) {
              const int64_t to = ((((t * 2 + u) * dy_channels + o) * 2 + a) * 2 + b) * channels + c;
              const int64_t from = (((2 - 2 * t + a) * 4 + 2 - 2 * u + b) * channels + c) * dy_channels + o;
              std::memcpy(phase_kernel.data() + to * weight_bytes, kernel + from * weight_bytes, weight_bytes);
            }
  const int64_t height = g.src[2], width = g.src[3];
  const auto f32 = memory::data_type::f32;
  const jaxmed::ConvShape shape{images, g.dst[2], g.dst[3], dy_channels, starts_h, starts_w, 4, 2, 2, 1, 1, 1, 1};
  if (channels == 1 && g.src_type == f32 && g.dst_type == f32 && g.weights_type == f32 &&
      narrow_conv::Supported(shape)) {
    narrow_conv::ForwardSubpixel(shape, reinterpret_cast<const float*>(dy),
                                 reinterpret_cast<const float*>(phase_kernel.data()), reinterpret_cast<float*>(dx),
                                 height, width);
    return true;
  }
  const int64_t pixel_bytes = channels * ElementBytes(g.src_type), pair_stride = 4 * pixel_bytes;
  const int64_t image_bytes = starts_h * starts_w * pair_stride;
  std::vector<char> buffer(images * image_bytes);
  RunRows(Direction::kForward, phases, const_cast<char*>(dy), phase_kernel.data(), buffer.data());
  const auto interleave = pixel_bytes == 4 ? InterleaveRow<4> : pixel_bytes == 2 ? InterleaveRow<2> : InterleaveRow<0>;
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t i = 0; i < height; ++i) {  // dx row i is full row i + 1 = 2p + a': window starts p, slot a'
      const int64_t p = (i + 1) / 2, a = (i + 1) % 2;
      interleave(buffer.data() + n * image_bytes + (p * starts_w * 4 + 2 * a) * pixel_bytes, pair_stride, starts_w,
                 width, pixel_bytes, dx + (n * height + i) * width * pixel_bytes);
    }
  }
  return true;
}

int64_t Elements(const memory::dims& dims) {
  int64_t n = 1;
  for (const auto d : dims) n *= d;
  return n;
}

// `elements` values of type `from` at `source` as type `to` at `target` (bfloat16 <-> float32;
// to bfloat16 rounds to nearest even).
void Convert(int64_t elements, memory::data_type from, const void* source, memory::data_type to, void* target) {
  dnnl::stream stream(Engine());
  memory in = Wrap(memory::desc({elements}, from, tag::a), const_cast<void*>(source));
  memory out = Wrap(memory::desc({elements}, to, tag::a), target);
  dnnl::reorder(in, out).execute(stream, in, out);
  stream.wait();
}

// A geometry with bfloat16 operands that oneDNN cannot run on this CPU (Lookup), run in
// float32: the operands it reads are widened (exactly), the one it writes is rounded back
// to its type. oneDNN's bfloat16 kernels multiply exactly and accumulate in float32 too, so
// only the order of the sums differs.
void RunInFloat32(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  const auto f32 = memory::data_type::f32;
  Geometry wide = g;
  wide.src_type = wide.weights_type = wide.dst_type = f32;
  // (type, elements, pointer, whether this direction writes it) of src, kernel, dst; the
  // backward-weights kernel is float32 already (RunWeights' partial sums).
  struct Operand {
    memory::data_type type;
    int64_t elements;
    void* data;
    bool written;
    std::vector<float> wide{};
  } operands[] = {
      {g.src_type, Elements(g.src), src, direction == Direction::kBackwardData},
      {direction == Direction::kBackwardWeights ? f32 : g.weights_type, Elements(g.weights), kernel,
       direction == Direction::kBackwardWeights},
      {g.dst_type, Elements(g.dst), dst, direction == Direction::kForward},
  };
  void* wide_data[3];
  for (int i = 0; i < 3; ++i) {
    Operand& operand = operands[i];
    wide_data[i] = operand.data;
    if (operand.type == f32) continue;
    operand.wide.resize(operand.elements);
    wide_data[i] = operand.wide.data();
    if (!operand.written) Convert(operand.elements, operand.type, operand.data, f32, wide_data[i]);
  }
  RunRows(direction, wide, wide_data[0], wide_data[1], wide_data[2]);
  for (Operand& operand : operands) {
    if (operand.written && operand.type != f32) {
      Convert(operand.elements, f32, operand.wide.data(), operand.type, operand.data);
    }
  }
}

// Runs `direction` on the g.src[0] rows the pointers start at. `kernel` is HWIO: the
// user's kernel (read) for forward and backward data, this part's float32 gradient
// (written) for backward weights.
void RunRows(Direction direction, const Geometry& g, void* src, void* kernel, void* dst) {
  if (direction == Direction::kBackwardData &&
      RunSubpixel(g, static_cast<char*>(src), static_cast<const char*>(kernel), static_cast<const char*>(dst))) {
    return;
  }
  if (RunNarrow(direction, g, src, kernel, dst) || RunWinograd(direction, g, src, kernel, dst) ||
      RunWeightGradient(direction, g, src, kernel, dst)) {
    return;
  }
  const Cached* found = Lookup(g, direction);
  if (found == nullptr) return RunInFloat32(direction, g, src, kernel, dst);
  const Cached& cached = *found;
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
// which meanwhile run independent fusions, and oversubscribed cores make the
// convolutions cost more thread time.
// Parts are claimed from a counter, so the calling thread runs every part that no pool
// thread has picked up: nothing waits for a busy pool.
//
// The handlers are asynchronous (they return an ffi::Future): the calling thread returns to
// XLA once no part is left to claim, and the thread finishing the last part completes the
// call: the parts of a call finish at different times, and XLA can give the calling
// thread other ready work instead of having it wait.
struct Call {
  Call(std::string what, int64_t batch, int count) : what(std::move(what)), batch(batch), count(count) {}
  const std::string what;  // names the call in errors
  const int64_t batch;
  const int count;
  std::function<void(int64_t first, int64_t rows, int part)> body;
  std::function<void()> finish;  // after every part: sums the parts' results, if any
  std::atomic<int> next{0}, remaining{count};
  std::mutex mutex;
  std::string error;  // the first part's error
  ffi::Promise promise;

  void Fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty()) error = message;
  }
};

// The message of the exception being handled.
std::string CurrentError() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

// oneDNN (OpenMP build) runs a primitive on omp_get_max_threads() threads: one, here.
struct OneOpenMpThread {
  const int previous = omp_get_max_threads();
  OneOpenMpThread() { omp_set_num_threads(1); }
  ~OneOpenMpThread() { omp_set_num_threads(previous); }
};

void Complete(Call& call) {
  if (call.error.empty() && call.finish) {
    try {
      OneOpenMpThread one_thread;  // else oneDNN here wakes an OpenMP team beside XLA's threads (50 us a reorder)
      call.finish();
    } catch (...) {
      call.error = CurrentError();
    }
  }
  if (call.error.empty()) {
    call.promise.SetAvailable();
  } else {
    call.promise.SetError(ffi::Error::Internal(call.what + ": " + call.error));
  }
}

// Claims and runs parts until none is left; the thread that ends the last part completes the call.
void Work(const std::shared_ptr<Call>& call) {
  for (int part; (part = call->next.fetch_add(1)) < call->count;) {
    const int64_t first = call->batch * part / call->count, end = call->batch * (part + 1) / call->count;
    try {
      OneOpenMpThread one_thread;
      call->body(first, end - first, part);
    } catch (...) {
      call->Fail(CurrentError());
    }
    if (call->remaining.fetch_sub(1) == 1) Complete(*call);
  }
}

int PartCount(ffi::ThreadPool& pool, int64_t batch) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), batch)));
}

// Runs body(first_row, rows, part) for one part of `batch` rows per pool thread, then `finish`.
// Everything the two functions use must live as long as the call: they own it or it is XLA's buffers.
ffi::Future RunInParts(ffi::ThreadPool& pool, const char* what, int64_t batch,
                       std::function<void(int64_t, int64_t, int)> body, std::function<void()> finish = {}) {
  auto call = std::make_shared<Call>(what, batch, PartCount(pool, batch));
  call->body = std::move(body);
  call->finish = std::move(finish);
  ffi::Future future(call->promise);
  for (int i = 1; i < call->count; ++i) pool.Schedule([call] { Work(call); });
  Work(call);
  return future;
}

Geometry Rows(Geometry g, int64_t rows) {
  g.src[0] = g.dst[0] = rows;
  return g;
}

// Forward (src = x, dst = y) or backward data (src = dx, dst = dy), partitioned by rows.
ffi::Future RunActivations(ffi::ThreadPool& pool, const char* what, Direction direction, const Geometry& g,
                           char* src, void* kernel, char* dst) {
  const int64_t src_row = RowBytes(g.src, g.src_type), dst_row = RowBytes(g.dst, g.dst_type);
  return RunInParts(pool, what, g.src[0], [=](int64_t first, int64_t rows, int) {
    RunRows(direction, Rows(g, rows), src + first * src_row, kernel, dst + first * dst_row);
  });
}

// Backward weights: each part's float32 gradient, summed, then stored in the kernel's dtype.
ffi::Future RunWeights(ffi::ThreadPool& pool, const char* what, const Geometry& g, char* src, void* kernel,
                       char* dst) {
  const int64_t src_row = RowBytes(g.src, g.src_type), dst_row = RowBytes(g.dst, g.dst_type);
  const size_t size = g.weights[0] * g.weights[1] * g.weights[2] * g.weights[3];
  auto partials = std::make_shared<std::vector<std::vector<float>>>(PartCount(pool, g.src[0]),
                                                                    std::vector<float>(size));
  return RunInParts(
      pool, what, g.src[0],
      [=](int64_t first, int64_t rows, int part) {
        RunRows(Direction::kBackwardWeights, Rows(g, rows), src + first * src_row, (*partials)[part].data(),
                dst + first * dst_row);
      },
      [=] {
        std::vector<float>& sum = (*partials)[0];
        for (size_t part = 1; part < partials->size(); ++part) {
          for (size_t i = 0; i < size; ++i) sum[i] += (*partials)[part][i];
        }
        if (g.weights_type == memory::data_type::f32) {  // 44 us for 2 MB, oneDNN's reorder 84 us
          std::copy(sum.begin(), sum.end(), static_cast<float*>(kernel));
          return;
        }
        dnnl::stream stream(Engine());
        memory sum_mem = Wrap(HWIO(g.weights, memory::data_type::f32), sum.data());
        memory user = Wrap(HWIO(g.weights, g.weights_type), kernel);
        dnnl::reorder(sum_mem, user).execute(stream, sum_mem, user);  // rounds to bfloat16
        stream.wait();
      });
}

// Runs f, which launches a call; an error found before any part starts fails the call at once.
template <typename F>
ffi::Future Guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (...) {
    ffi::Promise promise;
    ffi::Future future(promise);
    promise.SetError(ffi::Error::InvalidArgument(std::string(what) + ": " + CurrentError()));
    return future;
  }
}

// Per-channel [sum(a), sum(a * b)] of two (rows, channels) float32 arrays in one read of
// each: BatchNorm's statistics (a = b = x) and gradient sums (a = dy, b = x). XLA makes
// each sum its own reduction over the activations, a full read apiece. Arrays of shape
// (images, rows, channels) give the sums per image and channel, (2, images, channels):
// GroupNorm's, which it then adds up over each group's channels.
// Sums run in float32 over blocks of 256 rows, then in double.
constexpr int64_t kSumBlockRows = 256;

// Compiled for AVX-512, AVX2 and baseline x86-64, chosen at load time (GCC function multi-versioning).
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) void SumRows(const float* __restrict a,
                                                                           const float* __restrict b, int64_t rows,
                                                                           int64_t channels, float* __restrict s0,
                                                                           float* __restrict s1) {
  for (int64_t r = 0; r < rows; ++r, a += channels, b += channels) {
    for (int64_t c = 0; c < channels; ++c) s0[c] += a[c], s1[c] += a[c] * b[c];
  }
}

// Adds [sum(a), sum(a * b)] of `rows` rows to total[0:channels], total[channels:2 * channels].
void AddSums(const float* a, const float* b, int64_t rows, int64_t channels, double* total) {
  std::vector<float> block(2 * channels);
  for (int64_t r = 0; r < rows; r += kSumBlockRows) {
    std::fill(block.begin(), block.end(), 0.0f);
    SumRows(a + r * channels, b + r * channels, std::min(kSumBlockRows, rows - r), channels, block.data(),
            block.data() + channels);
    for (int64_t i = 0; i < 2 * channels; ++i) total[i] += block[i];
  }
}

ffi::Future ChannelSums(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> sums,
                        ffi::ThreadPool pool) {
  constexpr const char* what = "channel sums";
  return Guarded(what, [&] {
    const auto dims = a.dimensions();
    const int64_t channels = dims.back(), images = dims.size() == 3 ? dims[0] : 1;
    const int64_t rows = a.element_count() / channels / images;
    if (b.element_count() != a.element_count() ||
        static_cast<int64_t>(sums->element_count()) != 2 * images * channels) {
      throw std::invalid_argument("a, b and the (2, [images,] channels) result do not match");
    }
    const float *a_data = a.typed_data(), *b_data = b.typed_data();
    float* result = sums->typed_data();
    if (images > 1) {  // one part of the images per thread, each image's sums its own
      return RunInParts(pool, what, images, [=](int64_t first, int64_t count, int) {
        std::vector<double> total(2 * channels);
        for (int64_t image = first; image < first + count; ++image) {
          std::fill(total.begin(), total.end(), 0.0);
          AddSums(a_data + image * rows * channels, b_data + image * rows * channels, rows, channels, total.data());
          for (int64_t c = 0; c < channels; ++c) {
            result[image * channels + c] = static_cast<float>(total[c]);
            result[(images + image) * channels + c] = static_cast<float>(total[channels + c]);
          }
        }
      });
    }
    auto partials = std::make_shared<std::vector<std::vector<double>>>(PartCount(pool, rows),
                                                                       std::vector<double>(2 * channels));
    return RunInParts(
        pool, what, rows,
        [=](int64_t first, int64_t part_rows, int part) {
          AddSums(a_data + first * channels, b_data + first * channels, part_rows, channels,
                  (*partials)[part].data());
        },
        [=] {
          for (int64_t i = 0; i < 2 * channels; ++i) {
            double sum = 0.0;
            for (const auto& partial : *partials) sum += partial[i];
            result[i] = static_cast<float>(sum);
          }
        });
  });
}

pooling::Window MakeWindow(ffi::Span<const int64_t> in, ffi::Span<const int64_t> out,
                           int64_t window_h, int64_t window_w, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                           int64_t pad_left) {
  if (in.size() != 4 || out.size() != 4 || in[0] != out[0] || in[3] != out[3]) {
    throw std::invalid_argument("input and output must be NHWC of one batch and channel count");
  }
  if (window_h * window_w > 256 || pad_top >= window_h || pad_left >= window_w || stride_h < 1 || stride_w < 1) {
    throw std::invalid_argument("window of at most 256 positions, pads smaller than the window, strides >= 1");
  }
  return {in[1], in[2], in[3], out[1], out[2], window_h, window_w, stride_h, stride_w, pad_top, pad_left};
}

ffi::Future MaxPoolForward(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::U8> where,
                           int64_t window_h, int64_t window_w, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                           int64_t pad_left, ffi::ThreadPool pool) {
  constexpr const char* what = "max pool forward";
  return Guarded(what, [&] {
    const pooling::Window w =
        MakeWindow(x.dimensions(), y->dimensions(), window_h, window_w, stride_h, stride_w, pad_top, pad_left);
    const float* in = x.typed_data();
    float* out = y->typed_data();
    uint8_t* positions = where->typed_data();
    const int64_t in_image = w.InImage(), out_image = w.OutImage();
    return RunInParts(pool, what, x.dimensions()[0], [=](int64_t first, int64_t images, int) {
      std::vector<float> scratch(w.channels);
      pooling::MaxPoolForward(w, images, in + first * in_image, out + first * out_image,
                              positions + first * out_image, scratch.data());
    });
  });
}

ffi::Future MaxPoolBackward(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::U8> where, ffi::ResultBuffer<ffi::F32> dx,
                            int64_t window_h, int64_t window_w, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                            int64_t pad_left, ffi::ThreadPool pool) {
  constexpr const char* what = "max pool backward";
  return Guarded(what, [&] {
    const pooling::Window w =
        MakeWindow(dx->dimensions(), dy.dimensions(), window_h, window_w, stride_h, stride_w, pad_top, pad_left);
    const float* gradient = dy.typed_data();
    const uint8_t* positions = where.typed_data();
    float* out = dx->typed_data();
    const int64_t in_image = w.InImage(), out_image = w.OutImage();
    return RunInParts(pool, what, dy.dimensions()[0], [=](int64_t first, int64_t images, int) {
      pooling::MaxPoolBackward(w, images, gradient + first * out_image, positions + first * out_image,
                               out + first * in_image);
    });
  });
}

ffi::Future Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y, int64_t stride_h,
                    int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  constexpr const char* what = "oneDNN convolution forward";
  return Guarded(what, [&] {
    Geometry g = MakeGeometry(x, w, *y, stride_h, stride_w, pad_top, pad_left);
    return RunActivations(pool, what, Direction::kForward, g, static_cast<char*>(x.untyped_data()),
                          w.untyped_data(), static_cast<char*>(y->untyped_data()));
  });
}

ffi::Future BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx, int64_t stride_h,
                         int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  constexpr const char* what = "oneDNN convolution backward data";
  return Guarded(what, [&] {
    Geometry g = MakeGeometry(*dx, w, dy, stride_h, stride_w, pad_top, pad_left);
    return RunActivations(pool, what, Direction::kBackwardData, g, static_cast<char*>(dx->untyped_data()),
                          w.untyped_data(), static_cast<char*>(dy.untyped_data()));
  });
}

ffi::Future BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw, int64_t stride_h,
                            int64_t stride_w, int64_t pad_top, int64_t pad_left, ffi::ThreadPool pool) {
  constexpr const char* what = "oneDNN convolution backward weights";
  return Guarded(what, [&] {
    Geometry g = MakeGeometry(x, *dw, dy, stride_h, stride_w, pad_top, pad_left);
    return RunWeights(pool, what, g, static_cast<char*>(x.untyped_data()), dw->untyped_data(),
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

// Both pooling handlers take the window's six integer attributes and use XLA's pool.
template <typename Binding>
auto WindowBinding(Binding binding) {
  return std::move(binding).template Attr<int64_t>("window_h")
      .template Attr<int64_t>("window_w")
      .template Attr<int64_t>("stride_h")
      .template Attr<int64_t>("stride_w")
      .template Attr<int64_t>("pad_top")
      .template Attr<int64_t>("pad_left")
      .template Ctx<ffi::ThreadPool>();
}

}  // namespace

// The tile side m of the F(m x m, 3x3) kernels (winograd_3x3.h) that a float32 3x3 stride-1
// "SAME" call on `batch` images (one part of a batch: each pool thread runs one) of h x w x c
// into k channels runs, 0 where oneDNN runs it; `direction` is 0 forward, 1 input gradient, 2
// kernel gradient. For tests and benchmarks (ctypes).
extern "C" int jaxmed_winograd_3x3_tile(int64_t batch, int64_t h, int64_t w, int64_t c, int64_t k, int direction) {
  const jaxmed::ConvShape shape{batch, h, w, c, h, w, k, 3, 3, 1, 1, 1, 1};
  const winograd::Pass pass = PassOf(static_cast<Direction>(direction));
  return winograd::Use3x3(shape, pass) ? winograd::Plan3x3(shape, pass).tile : 0;
}

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
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_max_pool_forward, MaxPoolForward,
                              WindowBinding(ffi::Ffi::Bind()
                                                .Arg<ffi::Buffer<ffi::F32>>()
                                                .Ret<ffi::Buffer<ffi::F32>>()
                                                .Ret<ffi::Buffer<ffi::U8>>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxmed_max_pool_backward, MaxPoolBackward,
                              WindowBinding(ffi::Ffi::Bind()
                                                .Arg<ffi::Buffer<ffi::F32>>()
                                                .Arg<ffi::Buffer<ffi::U8>>()
                                                .Ret<ffi::Buffer<ffi::F32>>()));
