"""docs/FORMAT.md is true to the bucket: its script, run as printed, rebuilds a synced
folder from a local-directory remote without dropbeard."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.converge import Bucket, devices, tree

DOC = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_the_documented_script_rebuilds_the_folder(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("notes/todo.md", "buy milk\n")
    a.write("empty.txt", "")
    a.write("photos/2026/cat.jpg", bytes(range(256)) * 10)
    a.path("latest").symlink_to("notes/todo.md")
    a.sync()

    (script,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (tmp_path / "rebuild.py").write_text(script)
    out = tmp_path / "rebuilt"
    done = subprocess.run(
        [sys.executable, str(tmp_path / "rebuild.py"), remote.url, "r1", "a", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert tree(out) == a.tree()
