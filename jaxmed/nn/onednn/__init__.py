"""oneDNN convolutions for XLA:CPU (what PyTorch and TensorFlow use on CPU), reached through `jax.ffi`.

XLA:CPU's own kernels run the dcgan128 convolutions well below the rate of a
float32 matmul, the stride-2 gradients worst; oneDNN runs them near it.
`library` builds (once, under a lock, remembering failures) and loads the C++
kernels (`conv2d.cc`), `conv` wraps them as differentiable JAX functions,
`sums` exposes BatchNorm's and GroupNorm's one-pass per-channel sums, `max_pool` a max
pooling whose gradient reads its input once.
`jaxmed.nn.conv_backend` decides where the models use them.
"""

from jaxmed.nn.onednn import max_pool
from jaxmed.nn.onednn.conv import conv2d, conv2d_transpose, conv_general_dilated, supports
from jaxmed.nn.onednn.library import (OneDnnUnavailable, build, cache_root, cpu_isa, load, remembered_failure,
                                      unavailable_reason, widens_to_winograd_3x3)
from jaxmed.nn.onednn.sums import channel_sums, image_channel_sums

__all__ = ["OneDnnUnavailable", "build", "cache_root", "channel_sums", "conv2d", "conv2d_transpose",
           "conv_general_dilated", "cpu_isa", "image_channel_sums", "load", "max_pool", "remembered_failure",
           "supports", "unavailable_reason", "widens_to_winograd_3x3"]
