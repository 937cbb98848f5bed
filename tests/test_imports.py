"""Imports run one way: command-line tools -> training -> generation -> models / data /
evaluation -> small shared modules, and the package never imports the repository's
`configs/` (the files a run starts from, not part of the installed package). Read from the
source (every import, including those inside functions), so a backward import fails here
before it tangles the package."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dvd_gan"

COMMAND_LINE_TOOLS = {
    "dvd_gan.main",
    "dvd_gan.sample",
    "dvd_gan.evaluate",
    "dvd_gan.benchmark",
    "dvd_gan.cost_table",
    "dvd_gan.plot_curves",
    "dvd_gan.data.prepare",
    "dvd_gan.data.benchmark",
    "dvd_gan.models.__main__",
}
LAYERS = (  # (name, rank): a module may import only modules of its rank or lower
    ("dvd_gan.cost", 4),  # the benchmark's tooling, used by the benchmark tools
    ("dvd_gan.training", 3),
    ("dvd_gan.generation", 2),  # the EMA generator, for training and the commands alike
    ("dvd_gan.models", 1),
    ("dvd_gan.data", 1),
    ("dvd_gan.evaluation", 1),
)


def rank(module: str) -> int:
    if module in COMMAND_LINE_TOOLS:
        return 5
    for prefix, value in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return value
    return 0  # dvd_gan.compiler, sharding, pixels, losses, command_line


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from dvd_gan.training import loop` imports dvd_gan.training.loop.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("dvd_gan", "configs") and _exists(n)}


def _exists(module: str) -> bool:
    path = ROOT / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_no_import_runs_backwards():
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in imported_modules(path):
            if rank(imported) > rank(importer):
                backwards.append(f"{importer} imports {imported}")
    assert not backwards, "\n".join(backwards)


def test_the_package_does_not_import_the_config_files():
    importers = [
        module_name(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(m.split(".")[0] == "configs" for m in imported_modules(path))
    ]
    assert not importers, importers


def test_setup_installs_no_configs_package(tmp_path):
    """A top-level package named `configs` in site-packages would shadow, or be shadowed
    by, any other distribution's: setuptools' own package list has dvd_gan alone."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", f"--egg-base={tmp_path}"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    (info,) = tmp_path.glob("*.egg-info")
    assert (info / "top_level.txt").read_text().split() == ["dvd_gan"]


def test_the_checker_sees_a_backward_import(tmp_path):
    """The rule above can fail: an evaluation module importing training is caught."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from dvd_gan.training import loop\n    import configs.smoke\n")
    assert {"dvd_gan.training.loop", "configs.smoke"} <= imported_modules(module)
    assert rank("dvd_gan.training.loop") > rank("dvd_gan.evaluation.features")
