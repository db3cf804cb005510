"""House size limits: every module of the package and of the benchmark scripts stays readable in one sitting.

A module is at most 300 lines, a function (or method) at most 60, counted from its `def` line to its last line.
The check walks the files with `ast`, so nested functions and methods are counted too.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 300
FUNCTION_LINES = 60


def checked_files() -> list[Path]:
    return [
        *sorted((ROOT / "fastddpm").rglob("*.py")),
        *sorted((ROOT / "bench").glob("*.py")),
        *sorted((ROOT / "bench" / "campaign").glob("*.py")),
    ]


def oversized(path: Path, name: str) -> list[str]:
    """One line per module over MODULE_LINES lines and per function over FUNCTION_LINES lines in `path`."""
    source = path.read_text()
    found = []
    lines = len(source.splitlines())
    if lines > MODULE_LINES:
        found.append(f"{name}: module has {lines} lines (limit {MODULE_LINES})")
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES:
                found.append(
                    f"{name}:{node.lineno}: function {node.name} has {length} lines (limit {FUNCTION_LINES})"
                )
    return found


def test_the_walk_finds_the_package_and_the_benchmarks():
    names = {path.relative_to(ROOT).as_posix() for path in checked_files()}
    assert "fastddpm/cli/train.py" in names
    assert "bench/gpu_campaign.py" in names
    assert "bench/campaign/stages.py" in names


def test_the_check_sees_a_long_function_and_a_long_module(tmp_path):
    sample = tmp_path / "probe.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    sample.write_text("def short():\n    pass\n\n\ndef long():\n" + body + "\n" + "\n" * MODULE_LINES)
    found = oversized(sample, "probe.py")
    assert len(found) == 2
    assert any("function long has 61 lines" in line for line in found)
    assert any("module has" in line for line in found)


def test_modules_and_functions_stay_under_the_house_limits():
    found = [line for path in checked_files() for line in oversized(path, path.relative_to(ROOT).as_posix())]
    assert not found, "over the house size limits:\n" + "\n".join(found)
