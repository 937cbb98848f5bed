"""The generator's one-layer convolutional GRU, unrolled over time.

    r  = sigmoid(W_r * [h; x])        u = sigmoid(W_u * [h; x])
    c  = relu(W_c * [x; r . h])       h' = u . h + (1 - u) . c

(`candidate_activation='tanh'`, not the paper's, bounds the state: see docs/design.md.)

Each W is one kernel over the concatenated channels, spectrally normalised as a whole, as
the paper has it. The product is then split by input channels: the x-parts of all three
kernels are applied to every time step in one large convolution (time folded into batch),
and only the h-parts run inside the recurrence. The result is the same as convolving the
concatenation, with about half the per-step work.

The recurrence is a Python loop, not `lax.scan`: on the CPU a scan made the whole training
step several times slower (docs/benchmarks.md), and T is at most a few dozen.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvd_gan.models.layers import (
    ORTHOGONAL,
    float32_affine,
    fold_time,
    spectral_norm,
    unfold_time,
)


def _conv2d(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


CANDIDATE_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}


class _ConvGRURecurrence(nn.Module):
    """The unrolled recurrence over raw kernels; `ConvGRU` wraps it in spectral norm once."""

    features: int
    kernel_size: int
    dtype: Any
    candidate_activation: str = "relu"

    @nn.compact
    def __call__(self, x, h0, num_steps: int):
        ch, cx = self.features, x.shape[-1]
        k = (self.kernel_size, self.kernel_size)
        # Input channel layouts: reset/update kernels see [h; x], the candidate [x; r . h].
        reset_kernel = self.param("reset_kernel", ORTHOGONAL, k + (ch + cx, ch))
        update_kernel = self.param("update_kernel", ORTHOGONAL, k + (ch + cx, ch))
        candidate_kernel = self.param("candidate_kernel", ORTHOGONAL, k + (cx + ch, ch))
        reset_bias = self.param("reset_bias", nn.initializers.zeros, (ch,))
        update_bias = self.param("update_bias", nn.initializers.zeros, (ch,))
        candidate_bias = self.param("candidate_bias", nn.initializers.zeros, (ch,))

        def cast(a):
            return jnp.asarray(a, self.dtype)

        gates_h = cast(jnp.concatenate([reset_kernel[:, :, :ch], update_kernel[:, :, :ch]], -1))
        candidate_h = cast(candidate_kernel[:, :, cx:])
        all_x = cast(
            jnp.concatenate(
                [reset_kernel[:, :, ch:], update_kernel[:, :, ch:], candidate_kernel[:, :, :cx]],
                -1,
            )
        )
        all_bias = jnp.concatenate([reset_bias, update_bias, candidate_bias])

        x = cast(x)
        if x.ndim == 4:  # The same input at every step: convolve it once.
            x_terms = [float32_affine(_conv2d(x, all_x), 1.0, all_bias)] * num_steps
        else:
            batch_size = x.shape[0]
            x_terms = float32_affine(_conv2d(fold_time(x), all_x), 1.0, all_bias)
            x_terms = unfold_time(x_terms, batch_size)
            # A split, not T index slices: the gradient of a split is one concatenation,
            # that of each slice a pad of the whole tensor (T of them, all summed).
            x_terms = [x_t[:, 0] for x_t in jnp.split(x_terms, num_steps, axis=1)]

        activation = CANDIDATE_ACTIVATIONS[self.candidate_activation]
        # The state h is kept in float32 whatever the compute dtype (the usual mixed-
        # precision policy for a recurrence): the convolutions read it in self.dtype, but
        # the update u . h + (1 - u) . c is not rounded to bfloat16 at each of T steps.
        h = None if h0 is None else jnp.asarray(h0, jnp.float32)
        outputs = []
        for x_term in x_terms:
            x_gates, x_candidate = jnp.split(x_term, [2 * ch], axis=-1)
            if h is None:  # Zero initial state: every h-term vanishes at the first step.
                update = jax.nn.sigmoid(jnp.split(x_gates, 2, axis=-1)[1]).astype(jnp.float32)
                h = (1.0 - update) * activation(x_candidate).astype(jnp.float32)
            else:
                gates = x_gates + _conv2d(cast(h), gates_h)
                reset, update = jnp.split(jax.nn.sigmoid(gates.astype(jnp.float32)), 2, -1)
                candidate = activation(x_candidate + _conv2d(cast(reset * h), candidate_h))
                h = update * h + (1.0 - update) * candidate.astype(jnp.float32)
            outputs.append(cast(h))
        return jnp.stack(outputs, axis=1)


class ConvGRU(nn.Module):
    """Convolutional GRU run for `num_steps` steps.

    x: [B, T, H, W, Cx] (one input per step, T == num_steps) or [B, H, W, Cx] (the same input
    at every step); h0: [B, H, W, features] or None for a zero initial state.
    Returns every step's state: [B, num_steps, H, W, features].
    """

    features: int
    kernel_size: int = 3
    candidate_activation: str = "relu"
    sn_steps: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, h0, num_steps: int, train: bool):
        if x.ndim == 5 and x.shape[1] != num_steps:
            raise ValueError(f"ConvGRU got {x.shape[1]} input steps but num_steps={num_steps}.")
        if self.candidate_activation not in CANDIDATE_ACTIVATIONS:
            raise ValueError(
                f"Unknown model.gru_candidate_activation {self.candidate_activation!r}; use "
                f"one of {sorted(CANDIDATE_ACTIVATIONS)}."
            )
        recurrence = _ConvGRURecurrence(
            self.features,
            self.kernel_size,
            self.dtype,
            self.candidate_activation,
            name="recurrence",
        )
        return spectral_norm(recurrence, self.sn_steps, name="sn")(
            x, h0, num_steps, update_stats=train
        )
