"""Turns benchmark JSON lines (ahead-of-time TPU compiles) into the README's cost table.

    python -m dvd_gan.cost_table RESULTS.json [...]      # what launch/cost_table.sh writes

One row per config: parameters, FLOPs per step and example (without and with remat), and
the TPU compiler's per-core peak memory for each (device, remat) compiled, with whether it
fits the core.
"""

import json
import os
import sys

# HBM per TensorCore, the memory a per-core program must fit in.
CORE_MEMORY_BYTES = {"TPU v2": 8 << 30, "TPU v3": 16 << 30, "TPU v4": 32 << 30}
CORE_MEMORY_BYTES.update({"TPU v5 lite": 16 << 30, "TPU v5e": 16 << 30, "TPU v5p": 95 << 30})

GIB = 1 << 30


def read_results(paths: list[str]) -> list[dict]:
    results = []
    for path in paths:
        with open(path) as f:
            results.extend(json.loads(line) for line in f if line.strip())
    missing = [r for r in results if not r.get("topology")]
    if missing:
        raise ValueError(
            f"{len(missing)} result(s) lack a topology: the table is for ahead-of-time TPU "
            "compiles (python -m dvd_gan.benchmark ... --topology=v3:2x2)."
        )
    return results


def memory_cell(result: dict) -> str:
    used = result["peak_memory_bytes"]
    capacity = CORE_MEMORY_BYTES.get(result["device"])
    verdict = "" if capacity is None else (" ✓" if used <= capacity else " ✗")
    return f"{used / GIB:.1f}{verdict}"


def flops_per_example(results: list[dict], remat: str) -> str:
    """TFLOP per example and step of the first compile with this remat policy, or '–'."""
    for r in results:
        if r["remat"] == remat:
            return f"{r['flops_per_step'] / r['batch_size'] / 1e12:.1f}"
    return "–"


def markdown_table(results: list[dict]) -> str:
    columns = sorted(
        {(r["device"], r["remat"]) for r in results}, key=lambda c: (c[0], c[1] != "none")
    )
    by_config: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["device"]):
        by_config.setdefault(r["config"], []).append(r)
    header = ["config", "T×H²", "params G / D_S / D_T (M)", "TFLOP/step/example, remat none / full"]
    header += [f"{device} GiB/core, remat {remat}" for device, remat in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for config in sorted(by_config):
        compiles = by_config[config]
        first = compiles[0]
        params = " / ".join(f"{first['params'][k] / 1e6:.1f}" for k in ("G", "D_S", "D_T"))
        flops = f"{flops_per_example(compiles, 'none')} / {flops_per_example(compiles, 'full')}"
        memory = {(r["device"], r["remat"]): memory_cell(r) for r in compiles}
        cells = [config, f"{first['frames']}×{first['resolution']}²", params, flops]
        cells += [memory.get(column, "–") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(f"usage: python -m dvd_gan.cost_table RESULTS.json [...]\n{__doc__}")
    missing = [path for path in argv[1:] if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"FATAL: {', '.join(missing)} does not exist (benchmark JSON lines).")
    print(markdown_table(read_results(argv[1:])))


if __name__ == "__main__":
    main(sys.argv)
