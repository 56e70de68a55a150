"""Layers more than one family's networks are made of: the shape-preserving base and the counter-hash dropouts
(CounterDropout in the MLP, ScheduledDropout in RealMLP and TabM). It needs Keras only. KERAS_CLASSES are the
classes a saved network may hold: quest.learners.registry.keras_classes hands them to Keras where one is loaded."""

from __future__ import annotations

import math

import keras
import numpy as np


class ShapePreserving(keras.layers.Layer):
    """A layer whose output has its input's shape: said outright, so that building a model does not trace it."""

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def mix32(values):
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 whose outputs look independent of its inputs."""
    ops = keras.ops  # not Python's operators: TensorFlow's tensors have no `>>`
    values = ops.bitwise_xor(values, ops.right_shift(values, 16))
    values = ops.multiply(values, np.uint32(0x85EBCA6B))
    values = ops.bitwise_xor(values, ops.right_shift(values, 13))
    values = ops.multiply(values, np.uint32(0xC2B2AE35))
    return ops.bitwise_xor(values, ops.right_shift(values, 16))


@keras.saving.register_keras_serializable(package="quest")
class ScheduledDropout(ShapePreserving):
    """Inverted dropout whose rate the engine sets every step (the `rate` state: flat, then cosine to 0).

    Its mask hashes each unit's position with a seed that Keras' SeedGenerator advances every call (mix32, a
    counter-based generator): JAX's threefry cost 25 ms a step for 15 networks of RealMLP's size on this CPU,
    more than their matrix products; the hash costs under 1 ms.
    """

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        self.rate = self.add_weight(shape=(), initializer="zeros", trainable=False, name="rate")

    def call(self, x, training: bool = False):
        if not training:
            return x
        return counter_dropout(x, 1.0 - self.rate, self.seed_generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="quest")
class CounterDropout(ShapePreserving):
    """Keras' Dropout at a fixed rate, its mask a counter hash (see ScheduledDropout): Keras' own mask draws
    JAX's threefry, a loop of its own in every step, which cost the MLP's step on a CPU half its time."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        # The keep probability is the network's state, not a constant of its program: networks with different
        # rates (tuning trials) train in one compiled program.
        keep = keras.initializers.Constant(np.float32(1.0 - self.rate))
        self.keep = self.add_weight(shape=(), initializer=keep, trainable=False, name="keep")

    def call(self, x, training: bool = False):
        if not training or self.rate == 0:
            return x
        return counter_dropout(x, self.keep, self.seed_generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def counter_dropout(x, keep, seed_generator):
    """Inverted dropout keeping each value with probability `keep`, its mask hashed from its position."""
    seed = keras.ops.cast(seed_generator.next(), "uint32")
    key = mix32(keras.ops.bitwise_xor(seed[0], mix32(keras.ops.add(seed[1], np.uint32(0x632BE5AB)))))
    count = math.prod(x.shape[1:])
    # Counters as int32, then cast: TensorFlow has no uint32 range on a CPU.
    position = keras.ops.reshape(keras.ops.cast(keras.ops.arange(count, dtype="int32"), "uint32"), x.shape[1:])
    rows = keras.ops.cast(keras.ops.arange(keras.ops.shape(x)[0], dtype="int32"), "uint32")
    batch = keras.ops.multiply(keras.ops.reshape(rows, (-1, *[1] * (len(x.shape) - 1))), np.uint32(count))
    bits = mix32(keras.ops.add(keras.ops.multiply(keras.ops.add(batch, position), np.uint32(0x9E3779B9)), key))
    uniform = keras.ops.cast(keras.ops.right_shift(bits, 8), "float32") * (1.0 / (1 << 24))
    return keras.ops.where(uniform < keep, x / keras.ops.maximum(keep, 1e-6), 0.0)


KERAS_CLASSES = (ScheduledDropout, CounterDropout)
