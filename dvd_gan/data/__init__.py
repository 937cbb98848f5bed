"""Video datasets and the input pipeline. Importing this package registers the TFDS builders
`kinetics400`, `kinetics600`, `kinetics700` and `moving_mnist_local`."""

from dvd_gan.data import kinetics, moving_mnist  # noqa: F401  (registers the builders)
