"""docs/FORMAT.md is true to the bucket: its script, run as printed, rebuilds a folder
dropbeard synced (a paged folder and a nested one among its contents) from a
local-directory remote without dropbeard; its paging code agrees with an independent
writer; the README links it and the reader."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.converge import Bucket, devices, tree
from tests.format2 import Writer, sharded

DOC = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_the_documented_script_rebuilds_the_folder(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("notes/todo.md", "buy milk\n")
    a.write("empty.txt", "")
    a.write("photos/2026/cat.jpg", bytes(range(256)) * 10)
    a.path("latest").symlink_to("notes/todo.md")
    for i in range(300):  # a folder of more than 256 entries is paged
        a.write(f"many/{i:03d}.txt", f"{i}\n")
    a.path("many").chmod(0o700)
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


def test_the_documented_page_cut_agrees_with_an_independent_writer() -> None:
    """FORMAT.md's paging code (section 3.2), run as printed, gives a paged directory the
    same key as tests/format2.py, for a directory large enough for index levels."""
    (code,) = re.findall(r"```\n(def directory\(entries\):.*?)```", DOC.read_text(), re.S)
    writer = Writer(lambda key, data: None)
    scope: dict[str, object] = {"hashlib": hashlib, "put": writer.node}
    exec(code, scope)
    names = sorted((f"n{i:06d}" for i in range(40_000)), key=str.encode)
    entries = [{"name": n, "type": "symlink", "target": "t", "mode": 511} for n in names]
    documented = scope["directory"](entries)  # type: ignore[operator]
    assert documented == writer.listing(entries)
    top = json.loads(writer.written[f"roots/r1/{sharded('trees', documented)}"])
    assert "pages" in json.loads(
        writer.written[f"roots/r1/{sharded('trees', top['pages'][0]['tree'])}"]
    )


def test_the_readme_links_the_format_and_the_reader_inside_the_repository() -> None:
    repo = DOC.parent.parent
    for page in (repo / "README.md", DOC):
        links = re.findall(r"\]\(([^)#]+)[^)]*\)", page.read_text(encoding="utf-8"))
        for link in links:
            if "://" in link:
                continue
            target = (page.parent / link).resolve()
            assert target.is_relative_to(repo) and target.exists(), (page.name, link)
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert "](docs/FORMAT.md)" in readme and "](docs/read_bucket.py)" in readme
