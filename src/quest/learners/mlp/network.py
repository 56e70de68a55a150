"""The Keras 3 MLP as a network: built and compiled from params, and each job's own params.

Two engines train it: `fast` (quest.learners.engine, compiled JAX loops, many networks at once) and Keras'
`fit` (quest.learners.mlp.fit); quest.learners.mlp.learner chooses between them. Its jobs are
quest.learners.jobs'; saving, loading and answering rows, quest.learners.networks'.

Import this module only after `quest.learners.backend.configure`, which picks the Keras backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from quest.learners.backend import seed_everything
from quest.learners.jobs import Job, output_size
from quest.learners.layers import CounterDropout
from quest.params import TrainParams


def build_mlp(
    *,
    n_features: int,
    task: str,
    n_classes: int,
    hidden_layers: Sequence[int],
    activation: str,
    dropout_rate: float,
    l2: float,
    initializer: str,
) -> keras.Sequential:
    """Dense hidden layers (+ dropout) and an output fitted to the task: sigmoid, softmax or linear."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_features,), name="features")]
    for index, units in enumerate(hidden_layers, start=1):
        layers.append(
            keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=initializer,
                kernel_regularizer=regularizer,
                name=f"hidden_{index}",
            )
        )
        if dropout_rate > 0:
            layers.append(CounterDropout(dropout_rate, name=f"dropout_{index}"))
    units = output_size(task, n_classes)
    output_activation = "linear" if task == "regression" else ("sigmoid" if units == 1 else "softmax")
    layers.append(
        keras.layers.Dense(
            units,
            activation=output_activation,
            kernel_initializer="glorot_uniform",
            kernel_regularizer=regularizer,
            name="output",
        )
    )
    return keras.Sequential(layers, name="mlp")


def compile_mlp(
    model: keras.Model, *, task: str, n_classes: int, optimizer: str, learning_rate: float, momentum: float
) -> None:
    if optimizer == "sgd":
        chosen = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, name="sgd")
    else:  # a fixed name: Keras would number a second optimizer in one process (adam_1) into the saved file
        chosen = keras.optimizers.Adam(learning_rate=learning_rate, name="adam")
    if task == "regression":
        model.compile(optimizer=chosen, loss="mse", metrics=["mae"])
    elif output_size(task, n_classes) == 1:
        model.compile(optimizer=chosen, loss="binary_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer=chosen, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def job_spec(spec: TrainParams, job: Job) -> TrainParams:
    """The job's own train params: `spec` with the job's values (a tuning trial's) in place."""
    return dataclasses.replace(spec, **dict(job.hyper)) if job.hyper else spec


def fresh_mlp(n_features: int, *, task: str, n_classes: int, spec: TrainParams, seed: int) -> keras.Model:
    """A built and compiled MLP whose initial weights are those `seed` draws, whichever engine trains it."""
    seed_everything(seed)
    model = build_mlp(
        n_features=n_features,
        task=task,
        n_classes=n_classes,
        hidden_layers=spec.hidden_layers,
        activation=spec.activation,
        dropout_rate=spec.dropout_rate,
        l2=spec.l2,
        initializer=spec.initializer,
    )
    compile_mlp(
        model,
        task=task,
        n_classes=n_classes,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        momentum=spec.momentum,
    )
    return model
