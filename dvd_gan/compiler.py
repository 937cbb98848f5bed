"""`jit`: jax.jit with the XLA compiler options every jitted model function here uses.

jaxlib 0.10's CPU backend hands convolutions to YNNPACK by default (its default YNN fusion
types are dots, reductions and individual convolutions). YNNPACK's convolution weight
gradients run several times slower than XLA's own (Eigen) convolutions on x86 hosts, and
its forward and input-gradient convolutions are slower too (docs/benchmarks.md has the
train-step figures, `--cpu_convolutions=ynnpack` against the default). So on the CPU we
keep YNNPACK for dots and reductions only. The choice is a setting of the process, not of
the model (it changes no result): `set_cpu_convolutions`, from the CLIs'
`--cpu_convolutions`. It changes nothing on other backends and is left out there.
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


_cpu_convolutions = "xla"


def _check(cpu_convolutions: str):
    if cpu_convolutions not in CPU_CONVOLUTIONS:
        raise ValueError(
            f"Unknown cpu_convolutions {cpu_convolutions!r}; use one of {CPU_CONVOLUTIONS}."
        )


def set_cpu_convolutions(cpu_convolutions: str):
    """This process's CPU convolution kernels for every later `jit`: 'xla' (XLA's own) or
    'ynnpack' (jaxlib's default)."""
    global _cpu_convolutions
    _check(cpu_convolutions)
    _cpu_convolutions = cpu_convolutions


def compiler_options(
    cpu_convolutions: str | None = None, platform: str | None = None
) -> dict | None:
    """`compiler_options` for `jax.jit` on `platform` (default: JAX's default backend).

    cpu_convolutions: 'xla' runs CPU convolutions with XLA's own kernels; 'ynnpack' keeps
    jaxlib's default (YNNPACK); None: the process's setting. None where there is nothing
    to change.
    """
    cpu_convolutions = cpu_convolutions or _cpu_convolutions
    _check(cpu_convolutions)
    platform = platform or jax.default_backend()
    if platform != "cpu" or cpu_convolutions == "ynnpack":
        return None
    if not _xla_convolutions_accepted():
        return None
    return dict(_XLA_CONVOLUTIONS)


def jit(fn, *, platform: str | None = None, extra_options: dict | None = None, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` with this process's compiler options for `platform`
    (default: JAX's default backend), plus `extra_options`."""
    options = {**(compiler_options(platform=platform) or {}), **(extra_options or {})}
    return jax.jit(fn, compiler_options=options or None, **jit_kwargs)
