"""The optimisers the compiled engine (quest.learners.engine) steps networks with, as pure functions of their state:
a Keras optimizer's own `stateless_apply`, and Adam as PyTorch computes it, for the recipes ported from PyTorch.
Import only after `quest.learners.backend.configure` picked the jax backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np


class KerasUpdater:
    """A Keras optimizer's own stateless_apply."""

    def __init__(self, optimizer: keras.optimizers.Optimizer) -> None:
        self.optimizer = optimizer

    def variables(self, model: keras.Model) -> list[jax.Array]:
        self.optimizer.build(model.trainable_variables)
        return [v.value for v in self.optimizer.variables]

    def apply(self, state: list, grads: list, trainable: list, progress: jax.Array) -> tuple[list, list]:
        return self.optimizer.stateless_apply(state, grads, trainable)


class TorchAdam:
    """Adam as PyTorch computes it (ε added to the bias-corrected √v̂), each weight first shrunk by its decoupled
    weight decay: subclasses say, for each step, every trainable weight's decay multiplier (None: no decay) and
    learning rate (`rates`)."""

    def __init__(self, *, beta1: float, beta2: float, epsilon: float) -> None:
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def rates(self, progress: jax.Array) -> list[tuple[jax.Array | float | None, jax.Array | float]]:
        """Per trainable weight, in order: (decay multiplier or None, learning rate) at `progress`."""
        raise NotImplementedError

    def variables(self, model: keras.Model) -> list[jax.Array]:
        moments = [np.zeros(v.shape, dtype="float32") for v in model.trainable_variables]
        return [np.zeros((), dtype="float32"), *moments, *moments]

    def apply(self, state: list, grads: list, trainable: list, progress: jax.Array) -> tuple[list, list]:
        beta1, beta2, epsilon = self.beta1, self.beta2, self.epsilon
        count, first, second = state[0] + 1.0, state[1 : 1 + len(trainable)], state[1 + len(trainable) :]
        new_trainable, new_first, new_second = [], [], []
        for value, grad, m, v, (keep, step) in zip(trainable, grads, first, second, self.rates(progress), strict=True):
            if keep is not None:
                value = value * keep
            m = beta1 * m + (1.0 - beta1) * grad
            v = beta2 * v + (1.0 - beta2) * jnp.square(grad)
            m_hat, v_hat = m / (1.0 - beta1**count), v / (1.0 - beta2**count)
            new_trainable.append(value - step * m_hat / (jnp.sqrt(v_hat) + epsilon))
            new_first.append(m)
            new_second.append(v)
        return new_trainable, [count, *new_first, *new_second]
