"""Progress on a terminal (issue 13, item 3): `dropbeard sync` run in a pseudo-terminal
shows done/total files and bytes, the percentage, the rate, the ETA and the current file;
run into a pipe, none of it appears anywhere."""

from __future__ import annotations

import fcntl
import os
import pty
import random
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.converge import Cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: random bytes, so that every one of its chunks is sent: at the test's 8 MB/s, three
#: seconds of uploads, a chunk at a time, each redrawing the display
SIZE = 24 * 1024 * 1024


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "Sync"
    made = Cli(capsys)("init", str(root), "--remote", str(tmp_path / "remote"), "-q")
    assert made.code == 0, made.err
    for i in range(200):
        (root / f"note{i:03}.txt").write_text(f"note {i}\n")
    # synced first: a first sync sends a file's chunks while it hashes (`sync.ahead`), and
    # the big file's are to go up in the uploading stage here
    first = Cli(capsys)("sync", str(root), "-q")
    assert first.code == 0, first.err
    (root / "big.bin").write_bytes(random.Random(7).randbytes(SIZE))
    return root


def _sync_in_terminal(root: Path, columns: int, *args: str) -> tuple[str, str, int]:
    """`dropbeard sync ROOT ARGS` with stderr on a pseudo-terminal `columns` wide and
    stdout a pipe: what the terminal showed (escape sequences removed), stdout, the exit
    code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropbeard", "sync", str(root), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not data:
                break
            shown += data
    finally:
        os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=120)
    return ANSI.sub("", shown.decode(errors="replace")), out, code


@pytest.mark.parametrize("columns", [200, 80])
def test_sync_shows_totals_percent_rate_eta_and_file_on_a_terminal(
    root: Path, columns: int
) -> None:
    # 8 MB/s: the upload stage lasts three seconds on any machine, long enough for an ETA
    # (told once a stage has moved a hundredth of its bytes or run two seconds) and for
    # the rate of its chunks
    shown, out, code = _sync_in_terminal(root, columns, "--bwlimit", "8M")
    assert code == 0, shown
    frames = re.split(r"[\r\n]", shown)
    assert max(len(frame) for frame in frames) <= columns, shown  # nothing wraps
    assert "uploading" in shown
    assert re.search(r"\d+%", shown), shown
    # bytes done of the total: hashing reads, and uploading sends, the file's 25.2 MB
    assert re.search(r"[\d.]+/25\.2 MB", shown), shown
    # files done of the total: the file while hashing, its chunks while uploading
    assert re.search(r"\d+/[1-9] files", shown), shown
    assert re.search(r"[\d.]+ [kMG]?B/s", shown), shown  # the rate
    etas = re.findall(r"ETA (\d+):(\d\d):\d\d", shown)
    assert etas, shown
    # no ETA from a stage's first bytes alone: the upload takes seconds, not hours
    assert all(int(h) == 0 and int(m) < 5 for h, m in etas), shown
    assert re.search(r"(big\.bin|note\d{3}\.txt)", shown), shown  # the current file
    assert "ETA" not in out and "%" not in out  # stdout (a pipe) got the summary only
    assert out.startswith("synced ")


def test_sync_into_a_pipe_shows_no_progress(root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    done = subprocess.run(
        [sys.executable, "-m", "dropbeard", "sync", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "ETA" not in done.stdout and "uploading" not in done.stdout


_SYNC_THEN_SAY_IF_RICH = (
    "import sys; from dropbeard.cli.main import main; sys.argv = ['dropbeard', 'sync', "
    "sys.argv[1]]; code = main(); print('rich' in sys.modules, code)"
)


@pytest.mark.parametrize(("force_color", "imported"), [(None, False), ("1", True)])
def test_sync_into_a_pipe_never_imports_rich(
    root: Path, force_color: str | None, imported: bool
) -> None:
    # rich costs ~65 ms of CPU to import, a tenth of an idle sync's start; it is imported
    # only where it may draw: a TTY, or FORCE_COLOR (which makes rich draw into a pipe).
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    if force_color is not None:
        env["FORCE_COLOR"] = force_color
    done = subprocess.run(
        [sys.executable, "-c", _SYNC_THEN_SAY_IF_RICH, str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{imported} 0"
