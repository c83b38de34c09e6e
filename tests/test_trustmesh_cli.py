"""The `trustmesh` command: every subcommand listed and documented, errors as one clear line."""
import subprocess
import sys

import pytest

from trustmesh.cli import COMMANDS


def _trustmesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trustmesh.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand_with_its_line() -> None:
    result = _trustmesh("--help")
    assert result.returncode == 0
    for name, (_, text) in COMMANDS.items():
        assert f"{name}  " in result.stdout and text in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_explains_itself(name: str) -> None:
    result = _trustmesh(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: trustmesh {name}")


def test_unknown_subcommand_is_one_line_and_exit_2() -> None:
    result = _trustmesh("no-such-thing")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown subcommand" in result.stderr


def test_a_bad_input_is_one_line_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _trustmesh("run", str(tmp_path / "missing.json"), "--no-history")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "missing.json" in result.stderr
