"""The house rules that keep the code one-directional, checked on the source itself."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"train", "predict", "evaluate", "tune", "demo", "export", "convert_weights", "half_weights",
            "average_weights", "merge_submissions"}
FLOORS = {"preprocessing": set(), "unet": {"preprocessing"}, "mrcnn": {"preprocessing"},
          "tools": {"preprocessing", "unet", "mrcnn"}}


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_imports_point_down_the_floors_only():
    wrong = []
    for package, allowed in FLOORS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top in FLOORS and top != package and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, wrong


def test_no_module_imports_a_command():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for module in imported_modules(path):
            parts = module.split(".")
            if len(parts) == 2 and parts[0] == "tools" and parts[1] in COMMANDS:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, wrong


def test_make_bench_runs_its_quick_benchmark():
    run = subprocess.run([sys.executable, "bench/run_all.py", "--quick", "--only", "core"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "all benchmarks ran" in run.stdout


def test_every_shipped_weights_file_is_here():
    # bench/gpu_travel.py's branch leaves some out for a GPU call; a checkout left on it is not a release
    shipped = ("unet.weights.h5", "unet.stain.weights.h5", "mrcnn.weights.h5", "mrcnn.stain.weights.h5",
               "mobilenetv2_imagenet.weights.h5")
    missing = [name for name in shipped if not (ROOT / "weights" / name).is_file()]
    assert not missing, f"weights/ lacks {missing} (left on the gpu-travel branch? python bench/gpu_travel.py leave)"
    readme = (ROOT / "weights" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}" in readme for name in shipped)  # and each is documented


def test_the_long_test_files_exist_and_are_collected_first(request):
    from tests.conftest import LONG_FILES

    missing = [name for name in LONG_FILES if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py LONG_FILES names files that are gone: {missing}"
    order = [Path(item.path).resolve().relative_to(ROOT).as_posix() for item in request.session.items]
    files = list(dict.fromkeys(order))  # first appearance of each file, in run order
    if len(files) > len(LONG_FILES):  # the whole suite collected (not one file alone)
        first = files[:len(LONG_FILES)]
        assert set(first) == set(LONG_FILES)
        costs = [LONG_FILES[name] for name in first]
        assert costs == sorted(costs, reverse=True), first
