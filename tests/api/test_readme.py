"""The README's leasing-API examples, run as written against the sheet `idlecap demo` publishes.

The sheet is a fixture (tests/api/data/demo-sheets: the JSON `make demo` published on 2026-11-30
from the bundled Helios sample; training a model in a test would take minutes). To refresh it after
a pricing change: `make demo`, then copy var/sheets/price-sheet-000001.json and LATEST there.
`idlecap` runs as `python -m pipelines.cli`; `idlecap serve` is started by the test on a free port
and `8000` in the commands is replaced by that port.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from api_helpers import REPO, start_server, stop_server

DEMO = REPO / "tests" / "api" / "data" / "demo-sheets"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Leasing API (`idlecap serve`)", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _until_the_server_knows(url: str, key: str, wait_s: float = 15.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + wait_s
    while httpx.get(f"{url}/v1/price-sheets", headers={"Authorization": f"Bearer {key}"}).status_code == 401:
        assert time.monotonic() < deadline, "the server never picked up the new key"
        time.sleep(0.2)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (the README examples are curl commands; apt-get install curl)")
def test_the_readme_api_examples_work_on_the_demo_sheet(tmp_path):
    shutil.copytree(DEMO, tmp_path / "sheets")
    server = start_server(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLECAP_")}
    env["IDLECAP_VAR_DIR"] = str(tmp_path)
    port = server.url.rsplit(":", 1)[1]
    cmds = readme_commands()
    assert any(c.startswith("curl") and "/v1/quotes" in c for c in cmds)
    try:
        key = None
        for cmd in cmds:
            cmd = re.sub(r"\s+#.*$", "", cmd)
            if cmd.startswith("idlecap serve"):
                continue  # running: started above on a free port
            if cmd.startswith("idlecap "):
                out = subprocess.run([sys.executable, "-m", "pipelines.cli", *cmd.split()[1:]], cwd=REPO, env=env,
                                     capture_output=True, text=True, timeout=120)
                assert out.returncode == 0, out.stdout + out.stderr
                key = re.search(r"ick_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", out.stdout).group(0)
                _until_the_server_knows(server.url, key)  # the key file is re-read every reload_seconds
                continue
            assert cmd.startswith("curl"), cmd
            run = subprocess.run(["bash", "-c", cmd.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                                  + " -sS -w '\\n%{http_code}'"], env={**env, "KEY": key}, capture_output=True,
                                 text=True, timeout=60)
            body, status = run.stdout.rsplit("\n", 1)
            assert run.returncode == 0 and status == "200", (cmd, status, body[:500])
            doc = json.loads(body)
            if "/v1/quotes" in cmd:
                assert doc["gpus"] == 8 and doc["gpu_hours"] == 96 and doc["lines"]
                assert doc["sheet_status"] == "expired" and doc["warnings"]  # a 2020 sheet, served today
                assert 0 < doc["interruption_risk"] < 1 and doc["saving"] > 0
            elif "/v1/prices" in cmd:
                assert doc["items"] and all(i["gpu_model"] == "V100" and i["product"] == "spot" for i in doc["items"])
            else:
                assert doc["version"] == 1 and doc["items"] and "floor" not in doc["items"][0]
    finally:
        stop_server(server)
