"""What a train step costs: compiled FLOPs and memory, measured time, and the device's peak.

Used by `python -m dvd_gan.benchmark`. Compiles the real train step (the one training
uses) for a mesh of real devices, or ahead of time for a TPU slice described by a topology
name (`jax.experimental.topologies`, with libtpu installed), where the TPU compiler's own
memory and FLOP figures come back without any TPU.
"""

import collections
import re
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh, NamedSharding

from dvd_gan import models, sharding
from dvd_gan.compiler import jit
from dvd_gan.training.memory import out_of_memory_explained
from dvd_gan.training.state import abstract_state, init_state_on_mesh, state_shardings
from dvd_gan.training.step import jit_train_step

# Dense peak FLOP/s per JAX device, by device kind and compute dtype (vendor figures).
# TPU v2/v3 devices are single cores; v4 and v5p devices are megacore chips.
PEAK_FLOPS = {
    "TPU v2": {"bfloat16": 22.5e12},
    "TPU v3": {"bfloat16": 61.5e12},
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},
    "TPU v5e": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "NVIDIA A100": {"bfloat16": 312e12, "float32": 156e12},  # float32 as TF32
    "NVIDIA H100": {"bfloat16": 989e12, "float32": 494e12},
    "NVIDIA H200": {"bfloat16": 989e12, "float32": 494e12},
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """The device's dense peak for `dtype`, or None where it is not known (CPUs)."""
    for prefix, peaks in PEAK_FLOPS.items():
        if device_kind.startswith(prefix):
            return peaks.get(dtype, peaks.get("bfloat16"))
    return None


def abstract_inputs(config: ml_collections.ConfigDict, mesh: Mesh):
    """(state, batch) as ShapeDtypeStructs with the training shardings."""
    state = abstract_state(config, state_shardings(config, mesh))
    size = config.data.resolution
    shape = (config.train.d_steps, config.batch_size, config.data.num_frames, size, size, 3)
    layout = sharding.stacked_batch_sharding(mesh)
    batch = {
        "videos": jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=layout),
        "labels": jax.ShapeDtypeStruct(shape[:2], jnp.int32, sharding=layout),
    }
    return state, batch


def compile_step(config: ml_collections.ConfigDict, mesh: Mesh):
    """(lowered, compiled executable, seconds to lower and compile) of the train step."""
    start = time.perf_counter()
    lowered = jit_train_step(config, mesh).lower(*abstract_inputs(config, mesh))
    with out_of_memory_explained(config, mesh.shape[sharding.DATA_AXIS]):
        compiled = lowered.compile()
    return lowered, compiled, time.perf_counter() - start


def program_ops(lowered) -> int:
    """StableHLO operations in the lowered train step: the size of the program XLA starts
    from, before its own passes (which is what grows with an unrolled loop)."""
    return len(re.findall(r"= stablehlo\.", lowered.as_text()))


def _flops(analysis) -> float:
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float((analysis or {}).get("flops", 0.0))


def step_flops(lowered, compiled, devices) -> float:
    """FLOPs of one step on all devices, from XLA's cost analysis of the compiled step; on
    GPUs from that of the step before optimisation (`lowered`), since XLA:GPU's analysis of
    the compiled step leaves out the convolutions it hands to cuDNN and so undercounts a
    step several-fold (docs/benchmarks.md). On the CPU the two agree."""
    if devices[0].platform == "gpu":
        return _flops(lowered.cost_analysis())  # unpartitioned: the whole step
    return _flops(compiled.cost_analysis()) * len(devices)


def compiled_costs(compiled) -> dict:
    """Per-device peak memory the compiler reports for an executable."""
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        peak = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    return {"peak_memory_bytes": peak}


def measure_matmul(devices, dtype: str, size: int | None = None, repeats: int = 10) -> float:
    """FLOP/s of a size^3 matmul of random numbers on every device at once (each its own),
    the best of `repeats`: it is the reference peak, and a slow repeat (another process,
    memory reclaim) would otherwise inflate `mfu_vs_matmul`. Default size: 2048 on CPUs,
    8192 on accelerators (a smaller one leaves their matrix units mostly idle)."""
    size = size or (2048 if devices[0].platform == "cpu" else 8192)
    mesh = Mesh(np.array(devices), ("d",))
    per_device = NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    x = jax.jit(
        lambda key: jax.random.normal(key, (len(devices), size, size), dtype),
        out_shardings=per_device,
    )(jax.random.key(0))
    matmul = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a), out_shardings=per_device)
    matmul(x).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(x).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 * len(devices) / min(times)


def _synthetic_inputs(config: ml_collections.ConfigDict, mesh: Mesh):
    """A fresh train state and a batch of random uint8 videos, on the mesh."""
    state = init_state_on_mesh(config, mesh, jax.random.key(0))
    _, batch_shapes = abstract_inputs(config, mesh)
    rng = np.random.default_rng(0)
    batch = {
        name: jax.device_put(
            rng.integers(
                0, 255 if name == "videos" else max(config.model.num_classes, 1), s.shape
            ).astype(s.dtype),
            s.sharding,
        )
        for name, s in batch_shapes.items()
    }
    return state, batch


def time_steps(step, config: ml_collections.ConfigDict, mesh: Mesh, steps: int, warmup: int = 2):
    """Median seconds of `compile_step`'s compiled train step (not compiled again) on
    synthetic data, after `warmup` steps."""
    state, batch = _synthetic_inputs(config, mesh)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


_HLO_SHAPE = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")
_HLO_CONVOLUTION = re.compile(
    r"%([\w.\-]+) = \w+\[([\d,]*)\]\S* convolution\(%[\w.\-]+, %([\w.\-]+)\)"
    r".*?dim_labels=\w+_(\w+)->"
)


def convolution_flops(hlo_text: str) -> dict[str, float]:
    """FLOPs of every convolution instruction in an HLO module's text, by name: 2 x output
    elements x kernel elements per output feature (no grouped convolutions here)."""
    shapes = {
        name: [int(d) for d in dims.split(",") if d] for name, dims in _HLO_SHAPE.findall(hlo_text)
    }
    flops = {}
    for name, output, kernel, kernel_labels in _HLO_CONVOLUTION.findall(hlo_text):
        kernel_shape = shapes[kernel]
        per_output = np.prod(kernel_shape) / kernel_shape[kernel_labels.index("o")]
        flops[name] = 2.0 * np.prod([int(d) for d in output.split(",") if d]) * per_output
    return flops


_NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener")
_ASYNC_END = "end: "


def exclusive_op_times(events) -> tuple[collections.Counter, int]:
    """Wall time of each op, each nanosecond given to one op: `events` are (start_ns,
    end_ns, name) of one device's op lines (on the CPU, every XLA worker thread's).

    XLA:CPU starts a convolution as an asynchronous task whose work runs on the thread
    pool without events of its own, and marks its completion with an event named
    'end: NAME'; such an op spans from its start to that event. Where spans overlap
    (concurrent ops, an op waiting on another) the time goes to the op started last, so
    the times add up to the wall-clock span of the events; time with no op in flight is
    counted under 'idle'. Returns ({op name: ns}, number of op executions).
    """
    completions = collections.defaultdict(list)
    for _, end, name in events:
        if name.startswith(_ASYNC_END):
            completions[name[len(_ASYNC_END) :]].append(end)
    spans = []
    for start, end, name in events:
        if name.startswith(_ASYNC_END) or name.startswith(_NOT_OPS):
            continue
        later = [t for t in completions.get(name, ()) if t >= start]
        spans.append((start, max(end, min(later)) if later else end, name))
    spans.sort()
    times = collections.Counter()
    edges = sorted({t for start, end, _ in spans for t in (start, end)})
    active, next_span = [], 0
    for left, right in zip(edges[:-1], edges[1:], strict=True):
        while next_span < len(spans) and spans[next_span][0] <= left:
            active.append(spans[next_span])
            next_span += 1
        active = [span for span in active if span[1] > left]
        times[max(active)[2] if active else "idle"] += right - left
    return times, len(spans)


def profile_step(config: ml_collections.ConfigDict, mesh: Mesh, trace_dir: str, top: int = 15):
    """Profiles one train step (after a warm-up one) with `jax.profiler`: the trace goes to
    `trace_dir` (TensorBoard's profile plugin or Perfetto open it), and the step's wall
    time is split among its ops (`exclusive_op_times`) and summed by op kind (the name
    without its `.N` suffix).

    Returns {"ops": number of op executions, "top_ops": [[kind, ms, share], ...],
    "convolution_flops_per_s": the FLOPs of the step's (unfused) convolution ops over
    their time, "convolution_share": their share of the step}. The rate of its
    convolutions alone bounds what a step made of them can reach.
    """
    step = jit_train_step(config, mesh, trace_ops=True)
    state, batch = _synthetic_inputs(config, mesh)
    step = step.lower(state, batch).compile()
    conv_flops = convolution_flops(step.as_text())
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    with jax.profiler.trace(trace_dir):
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
    traces = sorted(
        epath.Path(trace_dir).glob("plugins/profile/*/*.xplane.pb"), key=lambda p: p.stat().mtime
    )
    profile = jax.profiler.ProfileData.from_file(str(traces[-1]))
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    events = []
    for plane in profile.planes:
        for line in plane.lines:
            # XLA:CPU records ops on its Eigen worker threads; GPUs and TPUs on an
            # "XLA Ops" line of each device plane.
            if on_cpu and not line.name.startswith("tf_XLAEigen"):
                continue
            if not on_cpu and not (plane.name.startswith("/device:") and line.name == "XLA Ops"):
                continue
            events.extend((e.start_ns, e.end_ns, e.name) for e in line.events)
    times, count = exclusive_op_times(events)
    totals = collections.Counter()
    for name, ns in times.items():
        totals[re.sub(r"\.\d+$", "", name)] += ns
    conv_ns = sum(ns for name, ns in times.items() if name in conv_flops)
    executed = {name for _, _, name in events}
    conv_flops_run = sum(flops for name, flops in conv_flops.items() if name in executed)
    total = sum(totals.values()) or 1
    top_ops = [
        [name, round(ns / 1e6, 3), round(ns / total, 4)] for name, ns in totals.most_common(top)
    ]
    return {
        "ops": count,
        "top_ops": top_ops,
        "convolution_flops_per_s": conv_flops_run / conv_ns * 1e9 if conv_ns else None,
        "convolution_share": conv_ns / total,
    }


def time_sampling(config: ml_collections.ConfigDict, num_videos: int, repeats: int = 5) -> float:
    """Median seconds for the EMA generator (eval mode) to make `num_videos` videos."""
    generator = models.build(config.model)[0]
    g_vars = jax.jit(lambda key: models.init(config.model, key, num_videos)[0])(jax.random.key(0))
    x = models.example_inputs(config.model, num_videos)
    sample = jit(lambda v, z, y, c: generator.apply(v, z, y, conditioning=c, train=False))
    z = jax.random.normal(jax.random.key(1), x["z"].shape)
    sample(g_vars, z, x["labels"], x["conditioning"]).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sample(g_vars, z, x["labels"], x["conditioning"]).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def topology_devices(topology: str):
    """The devices of a TPU slice, e.g. 'v3:4x4', for ahead-of-time compilation (libtpu)."""
    from jax.experimental import topologies

    try:
        return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
    except Exception as e:
        raise RuntimeError(
            f"Cannot describe TPU topology {topology!r}: {e}. Ahead-of-time TPU compiles "
            "need libtpu (pip install 'dvd-gan[tpu]'); to run several at once on one host, "
            "set ALLOW_MULTIPLE_LIBTPU_LOAD=1."
        ) from e
