"""XLA compiler options for the jitted functions that run the models' convolutions.

jaxlib 0.10's CPU backend hands convolutions to YNNPACK by default (its default YNN fusion
types are dots, reductions and individual convolutions). On a 2-core x86 host YNNPACK's
convolution weight gradients run at 15-30 GFLOP/s where XLA's own (Eigen) convolutions run
at 110-240, and its forward and input-gradient convolutions are 1.2-2x slower too; the
64x64, 12-frame, ch=32 train step takes 55.7 s with YNNPACK convolutions and 31.0 s
without (`python -m dvd_gan.benchmark ... --config.model.cpu_convolutions=ynnpack` against
the default). So on the CPU we keep YNNPACK for dots and reductions only. The option changes
nothing on other backends and is left out there.
"""

import functools

import jax
from absl import logging

CPU_CONVOLUTIONS = ("xla", "ynnpack")
# The default YNN fusion types of jaxlib 0.10 without LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
_XLA_CONVOLUTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
}


@functools.cache
def _xla_convolutions_accepted() -> bool:
    """Whether this jaxlib knows the option (a later one may rename or drop it)."""
    try:
        jax.jit(lambda: 0, compiler_options=_XLA_CONVOLUTIONS).lower().compile()
    except Exception as error:  # noqa: BLE001 - jaxlib raises a plain runtime error here.
        logging.warning("XLA rejects %s (%s); using its defaults.", _XLA_CONVOLUTIONS, error)
        return False
    return True


def compiler_options(cpu_convolutions: str = "xla", platform: str | None = None) -> dict | None:
    """`compiler_options` for `jax.jit` on `platform` (default: JAX's default backend).

    cpu_convolutions: 'xla' runs CPU convolutions with XLA's own kernels; 'ynnpack' keeps
    jaxlib's default (YNNPACK). None where there is nothing to change.
    """
    if cpu_convolutions not in CPU_CONVOLUTIONS:
        raise ValueError(
            f"Unknown cpu_convolutions {cpu_convolutions!r}; use one of {CPU_CONVOLUTIONS}."
        )
    platform = platform or jax.default_backend()
    if platform != "cpu" or cpu_convolutions == "ynnpack":
        return None
    if not _xla_convolutions_accepted():
        return None
    return dict(_XLA_CONVOLUTIONS)
