"""The CPU compiler options: XLA's own convolutions instead of YNNPACK's."""

import jax
import jax.numpy as jnp
import pytest

from dvd_gan.compiler import compiler_options, jit, set_cpu_convolutions

_SHAPES = (
    jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32),
    jax.ShapeDtypeStruct((8, 16, 16, 32), jnp.float32),
)


def _loss(kernel, x):
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.sum(y * y)


_conv_weight_gradient = jax.grad(_loss)


def _compiled_conv_weight_gradient(options):
    compiled = jax.jit(_conv_weight_gradient, compiler_options=options).lower(*_SHAPES).compile()
    return compiled.as_text()


def test_cpu_convolutions_leave_ynnpack():
    options = compiler_options("xla", platform="cpu")
    assert options is not None
    assert "__ynn_fusion" not in _compiled_conv_weight_gradient(options)
    # jaxlib's default hands the same convolutions to YNNPACK: the reason for the option.
    assert "__ynn_fusion" in _compiled_conv_weight_gradient(None)


def test_options_only_where_they_apply():
    assert compiler_options("ynnpack", platform="cpu") is None
    assert compiler_options("xla", platform="tpu") is None
    assert compiler_options("xla", platform="gpu") is None
    with pytest.raises(ValueError, match="'xla', 'ynnpack'"):
        compiler_options("eigen", platform="cpu")


def test_the_process_setting_picks_the_kernels():
    try:
        set_cpu_convolutions("ynnpack")
        assert compiler_options(platform="cpu") is None
        assert "__ynn_fusion" in jit(_conv_weight_gradient).lower(*_SHAPES).compile().as_text()
    finally:
        set_cpu_convolutions("xla")
    assert compiler_options(platform="cpu") is not None
    assert "__ynn_fusion" not in jit(_conv_weight_gradient).lower(*_SHAPES).compile().as_text()
    with pytest.raises(ValueError, match="'xla', 'ynnpack'"):
        set_cpu_convolutions("eigen")
