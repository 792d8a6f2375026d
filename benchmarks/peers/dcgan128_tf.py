"""docs/design.md's dcgan128 train step in TensorFlow, as the TensorFlow DCGAN tutorial writes it.

    benchmarks/peers/.venv/bin/python benchmarks/peers/dcgan128_tf.py --batch-size 32 --json out.json
    ... --variant xla             # the same step with tf.function(jit_compile=True)

The tutorial's form (tensorflow.org/tutorials/generative/dcgan): Keras Sequential
models, one `@tf.function` train step with two `GradientTape`s over one shared
forward pass (G(z) once, D on the real and the generated batch), each tape
differentiating its own loss w.r.t. its own network, `apply_gradients` per optimizer.
Layout NHWC (TensorFlow's default and oneDNN's fast path on CPU); default thread pools.
The `xla` variant only adds `jit_compile=True`, TensorFlow's documented way to compile
a step with XLA.

Changes from the tutorial, all to match jaxmed's `dcgan128` exactly (docs/design.md): 128x128
images from an 8x8x256 bottleneck with 4x4 stride-2 layers instead of 28x28 MNIST with
5x5 kernels; the dense output is reshaped before its BatchNorm (per-channel statistics,
as jaxmed); LeakyReLU(0.2); BatchNorm momentum 0.9 and epsilon 1e-5; no dropout in the
discriminator (docs/design.md has none; it uses BatchNorm after every convolution but the
first); Adam(2e-4, beta_1=0.5). Parameter counts are printed and checked by `benchmarks/peers.py`.

`--precision bf16` is Keras mixed precision as its guide prescribes: the global policy
"mixed_bfloat16" (bfloat16 compute, float32 variables and optimizer), the
discriminator's output layer in float32 so the logits and losses are float32, and no
loss scaling (bfloat16 does not need it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up banner off the terminal

import tensorflow as tf  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the shared timing method; see common.py)

VARIANTS = ("function", "xla")
BOTTLENECK = 8
INIT = tf.keras.initializers.RandomNormal(stddev=0.02, seed=0)


def _batch_norm() -> layers.BatchNormalization:
    return layers.BatchNormalization(momentum=common.BATCH_NORM_MOMENTUM, epsilon=common.BATCH_NORM_EPSILON)


def make_generator_model() -> tf.keras.Model:
    features = common.GENERATOR_FEATURES
    model = tf.keras.Sequential([
        layers.Input((common.LATENT_DIM,)),
        layers.Dense(BOTTLENECK * BOTTLENECK * features[0], use_bias=False, kernel_initializer=INIT),
        layers.Reshape((BOTTLENECK, BOTTLENECK, features[0])),
        _batch_norm(),
        layers.LeakyReLU(common.LEAKY_SLOPE),
    ])
    for f_out in features[1:]:
        model.add(layers.Conv2DTranspose(f_out, 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=INIT))
        model.add(_batch_norm())
        model.add(layers.LeakyReLU(common.LEAKY_SLOPE))
    model.add(layers.Conv2DTranspose(common.CHANNELS, 4, strides=2, padding="same", use_bias=True,
                                     activation="tanh", kernel_initializer=INIT))
    return model


def make_discriminator_model() -> tf.keras.Model:
    # The logits layer stays float32 under mixed precision (the Keras guide's advice for outputs).
    model = tf.keras.Sequential([layers.Input((common.IMAGE_SIZE, common.IMAGE_SIZE, common.CHANNELS))])
    for stage, f_out in enumerate(common.DISCRIMINATOR_FEATURES):
        model.add(layers.Conv2D(f_out, 4, strides=2, padding="same", use_bias=(stage == 0), kernel_initializer=INIT))
        if stage > 0:
            model.add(_batch_norm())
        model.add(layers.LeakyReLU(common.LEAKY_SLOPE))
    model.add(layers.Flatten())
    model.add(layers.Dense(1, kernel_initializer=INIT, dtype="float32"))
    return model


def parameter_counts(generator: tf.keras.Model, discriminator: tf.keras.Model) -> dict[str, int]:
    def count(model):
        return int(sum(tf.size(v).numpy() for v in model.trainable_variables))
    return {"generator": count(generator), "discriminator": count(discriminator)}


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], VARIANTS)
    load_before = common.host.load_average()
    rss_before = common.host.current_rss_mb()
    tf.random.set_seed(0)
    if args.precision == "bf16":
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    generator, discriminator = make_generator_model(), make_discriminator_model()
    parameters = parameter_counts(generator, discriminator)
    cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = tf.keras.optimizers.Adam(common.LEARNING_RATE, beta_1=common.BETA1, beta_2=common.BETA2)
    discriminator_optimizer = tf.keras.optimizers.Adam(common.LEARNING_RATE, beta_1=common.BETA1,
                                                       beta_2=common.BETA2)

    def discriminator_loss(real_output, fake_output):
        return cross_entropy(tf.ones_like(real_output), real_output) + cross_entropy(tf.zeros_like(fake_output),
                                                                                     fake_output)

    def generator_loss(fake_output):
        return cross_entropy(tf.ones_like(fake_output), fake_output)

    @tf.function(jit_compile=args.variant == "xla")
    def train_step(images):
        noise = tf.random.normal([args.batch_size, common.LATENT_DIM])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)
            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)
            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        generator_optimizer.apply_gradients(zip(gradients_of_generator, generator.trainable_variables))
        discriminator_optimizer.apply_gradients(zip(gradients_of_discriminator, discriminator.trainable_variables))
        return disc_loss, gen_loss

    images = tf.random.uniform([args.batch_size, common.IMAGE_SIZE, common.IMAGE_SIZE, common.CHANNELS], -1.0, 1.0)
    last = {}

    def step():
        last["losses"] = train_step(images)
        return last["losses"]

    # .numpy() waits for the step's results (TensorFlow may return before the work is done).
    samples, first_s = common.stats.time_samples(step, lambda losses: losses[0].numpy(), warmup=args.warmup,
                                                 repeats=args.steps)
    settings = {"data_format": "channels_last (NHWC)", "jit_compile": args.variant == "xla",
                "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
                "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
                "form": "TensorFlow DCGAN tutorial: tf.function, two GradientTapes, one shared forward",
                "keras_policy": tf.keras.mixed_precision.global_policy().name}
    versions = {"tensorflow": tf.__version__, "keras": tf.keras.__version__}
    d_loss, g_loss = (float(value.numpy()) for value in last["losses"])
    report = common.result("tensorflow", args.variant, args, samples, first_s, rss_before, parameters, versions,
                           settings, load_before, {"d_loss": d_loss, "g_loss": g_loss})
    common.emit(report, args.json)


if __name__ == "__main__":
    main()
