"""No Python file of the repository over :data:`MAX_LINES` lines (STYLE: modules under ~400
lines; issue 15): project code and tests alike, every ``.py`` file git tracks (so never
``.venv`` or files nobody committed). A file that grows past it is split by concern."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def tracked_python_files(root: Path) -> list[Path]:
    """Every ``.py`` file git tracks under ``root`` (relative paths)."""
    git = shutil.which("git")
    assert git is not None, "git is needed to list the tracked files"
    done = subprocess.run(
        [git, "ls-files", "-z", "--", "*.py"],
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return [Path(name) for name in done.stdout.decode().split("\0") if name]


def oversized(root: Path, files: list[Path], limit: int = MAX_LINES) -> list[str]:
    """``path: N lines`` for each of ``files`` (relative to ``root``) longer than ``limit``,
    longest first."""
    counts = {}
    for path in files:
        with (root / path).open("rb") as f:
            counts[path] = sum(1 for _ in f)
    over = sorted((n, str(p)) for p, n in counts.items() if n > limit)
    return [f"{path}: {n} lines" for n, path in reversed(over)]


def test_no_python_file_is_over_the_limit() -> None:
    files = tracked_python_files(ROOT)
    assert len(files) > 100  # the listing found the project
    assert oversized(ROOT, files) == [], f"split these by concern (max {MAX_LINES} lines)"


@pytest.mark.parametrize(("lines", "named"), [(MAX_LINES, False), (MAX_LINES + 1, True)])
def test_the_guard_names_a_file_one_line_over(tmp_path: Path, lines: int, named: bool) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, timeout=60)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * lines)
    (tmp_path / "pkg" / "small.py").write_text("y = 2\n")
    (tmp_path / "untracked.py").write_text("z = 3\n" * (lines + 10))
    subprocess.run(["git", "add", "pkg"], cwd=tmp_path, check=True, timeout=60)
    files = tracked_python_files(tmp_path)
    assert sorted(map(str, files)) == ["pkg/big.py", "pkg/small.py"]
    expected = [f"pkg/big.py: {lines} lines"] if named else []
    assert oversized(tmp_path, files) == expected
