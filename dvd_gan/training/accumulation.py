"""Gradient accumulation: a batch's gradient as the average of its micro-batches', computed
one after another so that only one micro-batch's activations are in memory."""

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from dvd_gan import sharding


def micro_batches(batch, steps: int, mesh: Mesh | None = None):
    """[B, ...] arrays -> [steps, B / steps, ...]: micro-batch j holds rows j, j + steps,
    j + 2 * steps, ..., so every device's contiguous share of the batch holds its share of
    every micro-batch (no rows move between devices). With a `mesh`, the result is
    constrained to that layout: each micro-batch's rows split over the data axis."""

    def split(x):
        x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, sharding.stacked_batch_sharding(mesh))

    return jax.tree_util.tree_map(split, batch)


def accumulated_gradients(grad_fn, params, batch, steps: int, mesh: Mesh | None = None):
    """`grad_fn(params, *batch, index) -> (grads, (metrics, *state))` over the whole batch,
    as `steps` micro-batches run one after another (a scan, so only one micro-batch's
    activations are live) whose gradients, metrics and other outputs are averaged. With
    equal micro-batches and a loss that is a mean over rows, the averaged gradient is the
    full batch's. The other outputs are network state: a BatchNorm running average
    m * old + (1 - m) * s_j averages to the step that the micro-batches' mean statistics
    give, and spectral-norm vectors, computed from the same weights in every micro-batch,
    average to themselves. Integer outputs are the last micro-batch's.

    With a `mesh`, the micro-batches are constrained to keep each one's rows split over
    its data axis (`micro_batches`), so that no partitioner's choice can gather a
    micro-batch onto every device."""
    if steps == 1:
        return grad_fn(params, *batch, 0)

    def body(total, inputs):
        index, micro = inputs
        grads, (metrics, *rest) = grad_fn(params, *micro, index)
        total = jax.tree_util.tree_map(jnp.add, total, (grads, metrics))
        return total, rest

    micro = micro_batches(batch, steps, mesh)
    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    _, (metric_shapes, *_) = jax.eval_shape(lambda: grad_fn(params, *first, 0))
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), (params, metric_shapes))
    (grads, metrics), rest = jax.lax.scan(body, zeros, (jnp.arange(steps), micro))
    average = jax.tree_util.tree_map(lambda x: x / steps, (grads, metrics))
    rest = jax.tree_util.tree_map(
        lambda x: jnp.mean(x, axis=0) if jnp.issubdtype(x.dtype, jnp.floating) else x[-1], rest
    )
    return average[0], (average[1], *rest)
