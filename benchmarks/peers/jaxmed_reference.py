"""jaxmed's benchmarked networks on fixed inputs: the weights, inputs and outputs that `check_networks.py` compares.

    python benchmarks/peers/jaxmed_reference.py OUT_DIR      # with jaxmed's Python, not the peers'

Writes OUT_DIR/NETWORK.npz for each network of `NETWORKS`: every parameter under its NNX path
("param:decoder.up_blocks.0.kernel"), the inputs ("input:0", ...) and the outputs ("output:0",
...), images in NHWC. The parameters are jaxmed's initialisation plus N(0, 0.05) noise, so that
no layer that starts at zero (the U-Net's residual branches) hides a difference. Networks run in
training mode (BatchNorm on batch statistics) without dropout, with XLA's convolutions, in
float32: a deterministic function of weights and inputs that the PyTorch peer must reproduce.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmed.models.classifier import build_classifier
from jaxmed.models.dcgan import Discriminator, Generator
from jaxmed.models.unet import build_unet
from jaxmed.models.vae import VAE

BATCH = 4
NOISE = 0.05


def _images(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (BATCH, size, size, 1)).astype(np.float32)


def _networks(rng: np.random.Generator) -> dict[str, tuple[Callable[[], nnx.Module], list[np.ndarray]]]:
    """{name: (builder, inputs)}; the names are `check_networks.NETWORKS`'."""
    rngs = nnx.Rngs(0)
    return {
        "dcgan128.generator": (lambda: Generator(128, 1, 100, conv_backend="xla", rngs=rngs),
                               [rng.standard_normal((BATCH, 100)).astype(np.float32)]),
        "dcgan128.discriminator": (lambda: Discriminator(128, 1, conv_backend="xla", rngs=rngs), [_images(rng, 128)]),
        "vae128": (lambda: VAE(128, 1, 128, conv_backend="xla", rngs=rngs),
                   [_images(rng, 128), rng.standard_normal((BATCH, 128)).astype(np.float32)]),
        "seed_cnn": (lambda: build_classifier("seed_cnn", 128, 1, 2, dropout_rate=0.0, conv_backend="xla", rngs=rngs),
                     [_images(rng, 128)]),
        "resnet18": (lambda: build_classifier("resnet18", 128, 1, 2, dropout_rate=0.0, conv_backend="xla", rngs=rngs),
                     [_images(rng, 128)]),
        "unet64": (lambda: build_unet("small", 64, 1, conv_backend="xla", rngs=rngs),
                   [_images(rng, 64), rng.uniform(0.0, 1.0, BATCH).astype(np.float32)]),
    }


def reference(build: Callable[[], nnx.Module], inputs: list[np.ndarray], key: jax.Array) -> dict[str, np.ndarray]:
    """The npz contents for one network: perturbed parameters, the inputs and the training-mode outputs."""
    model = build()
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    perturbed = [leaf + NOISE * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, perturbed))
    model.train()
    outputs = model(*(jnp.asarray(value) for value in inputs))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    arrays = {f"param:{'.'.join(str(part) for part in path)}": np.asarray(variable.value)
              for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    arrays.update({f"input:{index}": value for index, value in enumerate(inputs)})
    arrays.update({f"output:{index}": np.asarray(value) for index, value in enumerate(outputs)})
    return arrays


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: jaxmed_reference.py OUT_DIR")
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for index, (name, (build, inputs)) in enumerate(_networks(np.random.default_rng(0)).items()):
        np.savez(out / f"{name}.npz", **reference(build, inputs, jax.random.key(index)))
        print(f"wrote {out / name}.npz", file=sys.stderr)


if __name__ == "__main__":
    main()
