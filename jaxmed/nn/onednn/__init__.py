"""oneDNN convolutions for XLA:CPU (what PyTorch and TensorFlow use on CPU), reached through `jax.ffi`.

On this project's 2-core CPU XLA's own kernels run the dcgan128 convolutions at
about 5-80 % of a float32 matmul, the stride-2 gradients worst; oneDNN runs
them near the matmul rate. `library` builds and loads the C++ kernels
(`conv2d.cc`), `conv` wraps them as differentiable JAX functions,
`sums` exposes BatchNorm's one-pass per-channel sums.
`jaxmed.nn.conv_backend` decides where the models use them.
"""

from jaxmed.nn.onednn.conv import conv2d, conv2d_transpose, conv_general_dilated, supports
from jaxmed.nn.onednn.library import OneDnnUnavailable, build, load, unavailable_reason
from jaxmed.nn.onednn.sums import channel_sums

__all__ = ["OneDnnUnavailable", "build", "channel_sums", "conv2d", "conv2d_transpose", "conv_general_dilated", "load",
           "supports", "unavailable_reason"]
