"""Turns benchmark JSON lines (ahead-of-time TPU compiles) into the README's cost table.

    python -m dvd_gan.cost_table RESULTS.json [...]      # what launch/cost_table.sh writes

One row per config: parameters, FLOPs per step and per example, and the TPU compiler's
per-core peak memory for each (topology, remat) compiled, with whether it fits the core.
"""

import json
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


def markdown_table(results: list[dict]) -> str:
    columns = sorted({(r["device"], r["remat"]) for r in results})
    rows: dict[str, dict] = {}
    for r in results:
        row = rows.setdefault(r["config"], {"result": r, "memory": {}})
        row["memory"][(r["device"], r["remat"])] = memory_cell(r)
    header = ["config", "T×H²", "params G / D_S / D_T (M)", "TFLOP/step (per example)"]
    header += [f"{device} GiB/core, remat {remat}" for device, remat in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for config in sorted(rows):
        r = rows[config]["result"]
        params = " / ".join(f"{r['params'][k] / 1e6:.1f}" for k in ("G", "D_S", "D_T"))
        flops = r["flops_per_step"] / r["batch_size"] / 1e12
        cells = [config, f"{r['frames']}×{r['resolution']}²", params, f"{flops:.1f}"]
        cells += [rows[config]["memory"].get(column, "–") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(f"usage: python -m dvd_gan.cost_table RESULTS.json [...]\n{__doc__}")
    print(markdown_table(read_results(argv[1:])))


if __name__ == "__main__":
    main(sys.argv)
