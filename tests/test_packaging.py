"""The install prints no build warnings: the Makefile's editable install, run into a scratch prefix
with the same build backend (build-constraints.txt, already in this venv)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_editable_install_prints_no_build_warnings(tmp_path: Path) -> None:
    make = (REPO / "Makefile").read_text()
    line = next(x for x in make.splitlines() if "-e \".[dev]\"" in x)
    env_set = dict(re.findall(r'(\w+)="([^"]*)"', line.split("$(BIN)")[0]))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--prefix", str(tmp_path / "prefix"), "-e", str(REPO)],
                       env={**os.environ, **env_set}, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # lines of this machine's pip configuration (an index path it cannot see) are not ours
    out = [x for x in (r.stdout + r.stderr).splitlines() if x.strip() and "is ignored: it is neither a file" not in x]
    assert not out, "\n".join(out)
    pth = list((tmp_path / "prefix").rglob("__editable__*idlecap*"))
    assert pth, "no editable install was written"
