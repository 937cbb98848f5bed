"""Pixel scaling shared by the input pipeline and the train step, kept apart from the data
package so that the train step (and the benchmark) import neither TensorFlow nor TFDS."""


def scale_to_unit_range(videos):
    """uint8 [0, 255] -> float32 [-1, 1]; works on NumPy and JAX arrays alike."""
    return videos.astype("float32") / 127.5 - 1.0
