"""The last good sheet survives restarts, and key file problems are loud but never lock anyone out
(real `idlecap serve` processes)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from pricing.sheet import point_latest, sheet_name

from api_helpers import REPO, publish_sheet, start_server, stop_server


def _wait(pred, timeout: float = 5.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def test_a_restart_with_an_unreadable_newest_sheet_serves_the_newest_readable(tmp_path):
    sheets = tmp_path / "sheets"
    publish_sheet(sheets, 1)
    publish_sheet(sheets, 2)
    good = (sheets / f"{sheet_name(3)}.json")
    publish_sheet(sheets, 3)
    good.write_bytes(good.read_bytes()[:1000])  # truncated JSON, and LATEST names it
    server = start_server(tmp_path)
    try:
        c = server.client()
        r = c.get("/v1/price-sheet")
        assert r.status_code == 200 and r.headers["idlecap-sheet-version"] == "2"
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded" and body["ready"] is True and body["sheet_version"] == 2
        # the public probe says what in general terms; an internal key gets the file and the error
        assert body["reasons"] == ["the newest published sheet could not be read; serving v2, the newest readable sheet"]
        assert "price-sheet-" not in ready.text and "Error" not in ready.text
        body = server.client("internal").get("/readyz").json()
        assert any("price-sheet-000003.json" in x and "serving v2" in x for x in body["reasons"])
        assert server.client("customer").get("/readyz").json()["reasons"] == ready.json()["reasons"]
        assert [s["version"] for s in c.get("/v1/price-sheets").json()["sheets"]] == [2, 1]
        # on reload too: the next night is broken again, v4 never readable, v2 stays; then v5 is fine
        (sheets / f"{sheet_name(4)}.json").write_text('{"version": 4, "items": [')
        point_latest(sheets, 4)
        time.sleep(0.6)
        assert c.get("/v1/price-sheet").headers["idlecap-sheet-version"] == "2"
        assert "price-sheet-000004.json" in server.client("internal").get("/readyz").json()["reason"]
        publish_sheet(sheets, 5)
        _wait(lambda: c.get("/v1/price-sheet").headers["idlecap-sheet-version"] == "5")
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"
        # the history leaves the broken v3 and v4 out, and a page of one still walks 5, 2, 1
        walked, tok = [], None
        for _ in range(5):
            page = c.get("/v1/price-sheets", params={"limit": 1, **({"page_token": tok} if tok else {})}).json()
            walked += [x["version"] for x in page["sheets"]]
            tok = page["next_page_token"]
            if tok is None:
                break
        assert walked == [5, 2, 1] and tok is None
        assert [x["version"] for x in c.get("/v1/price-sheets", params={"limit": 2}).json()["sheets"]] == [5, 2]
        for _ in range(3):
            c.get("/v1/price-sheets")
        assert server.access_log().count("left out of the history") <= 2  # once per broken file, not per request
    finally:
        stop_server(server)


def test_a_corrupt_key_file_stops_the_start_with_one_clear_line(tmp_path):
    (tmp_path / "api_keys.json").write_text('{"keys": [{"key_id": ')
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLECAP_")}
    env["IDLECAP_VAR_DIR"] = str(tmp_path)
    p = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "--port", "1"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode != 0
    assert "Traceback" not in out and len(out.splitlines()) <= 2, out
    assert "api_keys.json" in out and "not a valid idlecap key file" in out
    # the uvicorn factory (workers, a proxy set-up) refuses the same way
    p = subprocess.run([sys.executable, "-m", "uvicorn", "pipelines.serve:app", "--factory", "--port", "1"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "Traceback" not in p.stdout + p.stderr and "not a valid idlecap key file" in p.stderr


def test_a_broken_or_deleted_key_file_keeps_the_last_good_keys_and_says_so(tmp_path):
    publish_sheet(tmp_path / "sheets", 1)
    server = start_server(tmp_path)
    keys = tmp_path / "api_keys.json"
    saved = keys.read_bytes()
    try:
        c = server.client()
        keys.write_text("{broken")
        _wait(lambda: httpx.get(f"{server.url}/readyz").json()["status"] == "degraded")
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["ready"] is True  # a public probe: what, not the file's contents or how many keys
        assert body["reasons"] == ["the API key file could not be read; the keys loaded before stay in use"]
        body = server.client("internal").get("/readyz").json()  # the kept internal key sees why
        assert any("not a valid idlecap key file" in x for x in body["reasons"])
        assert str(tmp_path) not in str(body)  # file names, not paths
        assert c.get("/v1/price-sheet").status_code == 200  # the last good keys still work
        time.sleep(0.8)  # several reload ticks: the problem is logged once
        log = server.access_log()
        assert log.count("not a valid idlecap key file") == 1, log
        keys.unlink()
        _wait(lambda: any("missing" in x for x in server.client("internal").get("/readyz").json()["reasons"]))
        assert c.get("/v1/price-sheet").status_code == 200
        assert server.access_log().count("api_keys.json is missing") == 1
        keys.write_bytes(saved)
        _wait(lambda: httpx.get(f"{server.url}/readyz").json()["status"] == "ok")
        assert c.get("/v1/price-sheet").status_code == 200
    finally:
        stop_server(server)
