"""The install prints no build warnings: the build backend (build-constraints.txt, in this venv)
builds the wheel and the editable wheel of a copy of the checkout, with the environment the
Makefile's install line sets. Nothing is installed (pip would replace this venv's own install)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = "import sys; from setuptools import build_meta as b; print(getattr(b, sys.argv[2])(sys.argv[1]))"


def test_the_build_prints_no_warnings(tmp_path: Path) -> None:
    make = (REPO / "Makefile").read_text()
    line = next(x for x in make.splitlines() if "-e \".[dev]\"" in x)
    env_set = dict(re.findall(r'(\w+)="([^"]*)"', line.split("$(BIN)")[0]))
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", "var", ".git", "__pycache__", "*.egg-info",
                                                             "build", ".pytest_cache", ".hypothesis", "bench"))
    out = tmp_path / "dist"
    out.mkdir()
    for hook in ("build_wheel", "build_editable"):  # one process each, as pip runs them
        r = subprocess.run([sys.executable, "-c", BUILD, str(out), hook], cwd=src, capture_output=True, text=True,
                           timeout=300, env={**os.environ, **env_set})
        assert r.returncode == 0, r.stderr[-3000:]
        # Python warnings (BuildBackendWarning, SetuptoolsDeprecationWarning, ...): what pip shows even with --quiet
        warnings = [x for x in r.stderr.splitlines() if re.search(r"\w+Warning\b", x)]
        assert not warnings, (hook, "\n".join(warnings))
    wheels = sorted(p.name for p in out.glob("*.whl"))
    assert len(wheels) == 2 and any("editable" in w for w in wheels), wheels
    import zipfile

    names = zipfile.ZipFile(next(p for p in out.glob("*.whl") if "editable" not in p.name)).namelist()
    assert "warehouse/migrations/0001_init.sql" in names  # the migrations ship with the package
