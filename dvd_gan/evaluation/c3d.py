"""C3D (Tran et al., 2015) fine-tuned on UCF-101, for the UCF-101 Inception Score of the
TGAN papers (Saito et al.), which DVD-GAN reports. The weights are supplied by the user.

Protocol: 16 frames, each resized (bilinear) to 128x171 and centre-cropped to 112x112,
values in [0, 255] minus the per-pixel mean; softmax over C3D's 101 UCF-101 classes.

Accepted weights: a NumPy `.npz` with
    conv1a, conv2a, conv3a, conv3b, conv4a, conv4b, conv5a, conv5b:
        '<name>/kernel' [kt, kh, kw, C_in, C_out] (time, height, width; RGB input), '<name>/bias'
    fc6, fc7, fc8: '<name>/kernel' [in, out], '<name>/bias'; fc6's input is pool5 flattened
        channels-last, [1, 4, 4, 512] -> 8192
    'mean': broadcastable to [16, 112, 112, 3] (RGB), subtracted from the cropped input.
docs/evaluation.md shows how to convert the public TGAN (Chainer) C3D weights.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dvd_gan.evaluation.data_parallel import DataParallel
from dvd_gan.evaluation.features import bilinear_matrix
from dvd_gan.evaluation.i3d import conv3d

NUM_FRAMES, CROP, RESIZE = 16, 112, (128, 171)
CONVOLUTIONS = {
    "conv1a": 64, "conv2a": 128, "conv3a": 256, "conv3b": 256,
    "conv4a": 512, "conv4b": 512, "conv5a": 512, "conv5b": 512,
}  # fmt: skip
DENSE = {"fc6": 4096, "fc7": 4096, "fc8": 101}
POOL_AFTER = {
    "conv1a": (1, 2, 2),
    "conv2a": (2, 2, 2),
    "conv3b": (2, 2, 2),
    "conv4b": (2, 2, 2),
    "conv5b": (2, 2, 2),
}


class C3D(nn.Module):
    """videos [N, 16, 112, 112, 3], mean-subtracted -> logits [N, 101]."""

    @nn.compact
    def __call__(self, x):
        for name, features in CONVOLUTIONS.items():
            kernel = self.param(
                f"{name}/kernel", nn.initializers.lecun_normal(), (3, 3, 3, x.shape[-1], features)
            )
            x = nn.relu(
                conv3d(x, kernel, (1, 1, 1))
                + self.param(f"{name}/bias", nn.initializers.zeros, (features,))
            )
            if name in POOL_AFTER:
                # 'SAME' rounds pool5's 7x7 up to 4x4, as Caffe's padded pool5 does.
                x = nn.max_pool(x, POOL_AFTER[name], strides=POOL_AFTER[name], padding="SAME")
        x = x.reshape(x.shape[0], -1)
        for name, features in DENSE.items():
            kernel = self.param(
                f"{name}/kernel", nn.initializers.lecun_normal(), (x.shape[-1], features)
            )
            x = x @ kernel + self.param(f"{name}/bias", nn.initializers.zeros, (features,))
            if name != "fc8":
                x = nn.relu(x)
        return x


def expected_shapes() -> dict[str, tuple]:
    shapes = jax.eval_shape(
        C3D().init, jax.random.key(0), jnp.zeros((1, NUM_FRAMES, CROP, CROP, 3))
    )["params"]
    return {name: tuple(s.shape) for name, s in shapes.items()}


def load_weights(path: str) -> tuple[dict, np.ndarray]:
    """(params, mean) from a weights file in the format above, checked layer by layer."""
    try:
        stored = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"Cannot read C3D weights {path!r}: {e}. See dvd_gan/evaluation/c3d.py."
        ) from e
    params = {}
    for name, shape in expected_shapes().items():
        if name not in stored:
            raise ValueError(f"C3D weights {path!r} lack {name!r} (have {sorted(stored.files)}).")
        if stored[name].shape != shape:
            raise ValueError(
                f"C3D weights {path!r}: {name!r} is {stored[name].shape}, expected {shape}."
            )
        params[name] = np.asarray(stored[name], np.float32)
    if "mean" not in stored:
        raise ValueError(f"C3D weights {path!r} lack 'mean' (the per-pixel input mean).")
    mean = np.broadcast_to(np.asarray(stored["mean"], np.float32), (NUM_FRAMES, CROP, CROP, 3))
    return params, mean


def preprocess(videos, mean):
    """uint8 [N, 16, H, W, 3] -> [N, 16, 112, 112, 3]: resized to 128x171, centre-cropped,
    minus the mean."""
    h, w = videos.shape[2:4]
    x = videos.astype(jnp.float32)
    x = jnp.einsum("ph,nthwc->ntpwc", bilinear_matrix(h, RESIZE[0], True), x)
    x = jnp.einsum("qw,nthwc->nthqc", bilinear_matrix(w, RESIZE[1], True), x)
    top, left = (RESIZE[0] - CROP) // 2, (RESIZE[1] - CROP) // 2
    return x[:, :, top : top + CROP, left : left + CROP] - mean


def protocol() -> dict:
    return {
        "model": "C3D fine-tuned on UCF-101 (user-supplied weights), TGAN protocol",
        "layer": "fc8 softmax (101 classes)",
        "resize": f"bilinear to {RESIZE[0]}x{RESIZE[1]}, centre crop {CROP}, minus mean",
        "frames": NUM_FRAMES,
        "quantisation": "uint8",
    }


class C3DLogits:
    """Callable: uint8 videos [N, 16, H, W, 3] -> logits [N, 101], each batch split over
    every device of every process (see batches.DataParallel)."""

    def __init__(self, weights_path: str, batch_size: int = 8):
        params, mean = load_weights(weights_path)
        model = C3D()
        self._logits = DataParallel(
            lambda p, m, v: model.apply({"params": p}, preprocess(v, m)), batch_size
        )
        self.params, self.mean = self._logits.place((params, mean))

    def __call__(self, videos: np.ndarray) -> np.ndarray:
        if videos.shape[1] != NUM_FRAMES:
            raise ValueError(f"The C3D protocol uses {NUM_FRAMES} frames; got {videos.shape[1]}.")
        return self._logits((self.params, self.mean), (videos,), "C3D logits")
