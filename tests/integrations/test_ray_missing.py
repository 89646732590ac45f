"""Without Ray installed, the Ray commands stop with the pip line that installs it (exit status 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trt_embed.cli import main


@pytest.mark.parametrize("command", ["embed", "serve"])
def test_ray_commands_say_how_to_install_it(
    command: str,
    tiny_artifact: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pyarrow")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ModuleNotFoundError
    artifact = str(tiny_artifact("BertModel"))
    (tmp_path / "in.txt").write_text("hello\n")
    if command == "embed":
        argv = ["embed", artifact, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o.parquet")]
    else:
        argv = ["serve", artifact, "--port", "8765"]
    assert main([*argv, "--ray", "auto"]) == 2
    assert "pip install 'trt-embed[ray]'" in capsys.readouterr().err
