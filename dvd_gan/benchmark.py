"""Benchmarks the train step (or sampling) of a config; prints one JSON line.

    python -m dvd_gan.benchmark --config=configs/smoke.py [--config.<field>=...] [--steps=10]
    python -m dvd_gan.benchmark --config=configs/kinetics600.py:48x128 --compile_only \\
        --per_device_batch=1 [--topology=v3:4x4]      # ahead of time, e.g. for a TPU slice
    python -m dvd_gan.benchmark --config=configs/kinetics600.py:48x64 --sample --sample_videos=2

Keys: `step_time_s` (median over --steps steps after 2 warm-up steps; a step is d_steps D
updates and one G update), `clips_per_s` (real clips consumed: d_steps x batch / step),
`compile_s`, `program_ops` (StableHLO ops of the lowered step, before XLA's passes),
`flops_per_step` (XLA's cost analysis, all devices; see cost.step_flops),
`flops_per_s`, `matmul_flops_per_s` (a 2048^3 matmul per device, 8192^3 on accelerators,
in the compute dtype, best of 10, measured in this process), `mfu` (against the device's
peak where known, else null), `mfu_vs_matmul`,
`peak_memory_bytes` (per device, from the compiled executable), `params` (G, D_S, D_T).
--compile_only and --topology skip running: the compiler's FLOPs and memory only.
--profile_dir=DIR also profiles one step: the trace in DIR, and `ops` (op executions),
`top_ops` ([op kind, ms, share of the step's wall time, each moment given to one op:
`cost.exclusive_op_times`]), `convolution_flops_per_s` (the convolution ops' FLOPs over
their time: a ceiling for the whole step) and `convolution_share` (of the step) in the JSON.
"""

import json

import jax
from absl import app, flags
from ml_collections import config_flags

from dvd_gan.command_line import (
    apply_cpu_convolutions,
    define_cpu_convolutions_flag,
    fatal,
    parse_flags,
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, path[:variant].")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after 2 warm-up steps).")
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "Lower and compile only.")
_TOPOLOGY = flags.DEFINE_string("topology", None, "Compile for a TPU slice, e.g. v3:4x4.")
_PER_DEVICE_BATCH = flags.DEFINE_integer(
    "per_device_batch", None, "Set the global batch to this times the devices."
)
_SAMPLE = flags.DEFINE_bool("sample", False, "Time sampling of the generator instead.")
_SAMPLE_VIDEOS = flags.DEFINE_integer("sample_videos", 2, "Videos per sampling call.")
_CPU_CONVOLUTIONS = define_cpu_convolutions_flag()
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", None, "Also profile one step: trace here, op-kind times in the JSON."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dvd_gan import cost, models, sharding
    from dvd_gan.training.memory import DoesNotFitError

    config = _CONFIG.value
    apply_cpu_convolutions(_CPU_CONVOLUTIONS.value)
    devices = cost.topology_devices(_TOPOLOGY.value) if _TOPOLOGY.value else jax.devices()
    kind = devices[0].device_kind
    models.resolve_platform_settings(config.model, devices[0].platform)
    report = {
        "config": config_flags.get_config_filename(flags.FLAGS["config"]),
        "overrides": config_flags.get_override_values(flags.FLAGS["config"]),
        "topology": _TOPOLOGY.value,
        "device": kind,
        "devices": len(devices),
        "dtype": config.model.dtype,
        "frames": config.data.num_frames,
        "resolution": config.data.resolution,
        "params": models.count_parameters(config.model),
    }
    if _SAMPLE.value:
        seconds = cost.time_sampling(config, _SAMPLE_VIDEOS.value)
        print(
            json.dumps({**report, "sample_videos": _SAMPLE_VIDEOS.value, "sample_time_s": seconds})
        )
        return
    if _PER_DEVICE_BATCH.value:
        config.batch_size = _PER_DEVICE_BATCH.value * len(devices) // config.mesh.model_axis
    mesh = sharding.make_mesh(devices=devices, model_axis=config.mesh.model_axis)
    try:
        lowered, compiled, compile_s = cost.compile_step(config, mesh)
    except DoesNotFitError as e:
        fatal(str(e))
    costs = cost.compiled_costs(compiled)
    flops_per_step = cost.step_flops(lowered, compiled, devices)
    report.update(
        batch_size=config.batch_size,
        remat=config.model.remat,
        mesh={"data": mesh.shape[sharding.DATA_AXIS], "model": mesh.shape[sharding.MODEL_AXIS]},
        compile_s=round(compile_s, 2),
        program_ops=cost.program_ops(lowered),
        flops_per_step=flops_per_step,
        peak_memory_bytes=costs["peak_memory_bytes"],
    )
    if not (_COMPILE_ONLY.value or _TOPOLOGY.value):
        step_time = cost.time_steps(compiled, config, mesh, _STEPS.value)
        matmul = cost.measure_matmul(devices, config.model.dtype)
        flops_per_s = flops_per_step / step_time
        peak = cost.peak_flops(kind, config.model.dtype)
        report.update(
            step_time_s=step_time,
            clips_per_s=config.train.d_steps * config.batch_size / step_time,
            flops_per_s=flops_per_s,
            matmul_flops_per_s=matmul,
            mfu=flops_per_s / (peak * len(devices)) if peak else None,
            mfu_vs_matmul=flops_per_s / matmul,
        )
        if _PROFILE_DIR.value:
            report.update(cost.profile_step(config, mesh, _PROFILE_DIR.value))
    print(json.dumps(report))


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=parse_flags)
