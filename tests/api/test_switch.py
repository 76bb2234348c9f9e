"""Resilience: the old sheet while a new one is written, an atomic switch, expiry, a failed night."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import httpx
import pandas as pd

from pricing.sheet import content_hash, point_latest, sheet_name

from api_helpers import make_sheet, publish_sheet, start_server, stop_server


PUBLISHED = ("pool", "gpu_model", "gpu_class", "region", "product", "start", "end", "price_per_gpu_hour", "gpus_offered",
             "interruption_risk", "reference", "discount_vs_reference", "undercut_usd_per_gpu_hour", "floor", "guardrails")


def _check_complete(body: bytes) -> int:
    """A response is a whole, self-consistent sheet: it parses and the published content hash matches its items
    (the internal view holds every published field)."""
    doc = json.loads(body)
    assert doc["content_sha256"] == content_hash(doc, [{k: it[k] for k in PUBLISHED} for it in doc["items"]])
    return doc["version"]


def test_serves_old_sheet_while_new_one_is_written_then_switches_atomically(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    sheets = tmp_path / "sheets"
    publish_sheet(sheets, 1, now)
    server = start_server(tmp_path, reload_seconds=0.05)
    seen: list[tuple[int, int]] = []  # (client, version) in the order each client saw them
    errors: list[str] = []
    stop = threading.Event()

    def hammer(n: int) -> None:
        with server.client("internal") as c:  # the internal view carries content_sha256
            while not stop.is_set():
                try:
                    r = c.get("/v1/price-sheet")
                    assert r.status_code == 200, r.status_code
                    v = _check_complete(r.content)
                    assert r.headers["idlecap-sheet-version"] == str(v)
                    seen.append((n, v))
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        # a writer half-way through v2: temp file, Parquet, even the JSON before LATEST moves
        v2 = make_sheet(2, now, seed=42)
        (sheets / f".{sheet_name(2)}.json.x.tmp").write_bytes(json.dumps(v2.to_dict()).encode()[:5000])
        time.sleep(0.5)
        assert {v for _, v in seen} == {1}
        from pricing.sheet import publish

        publish(v2, sheets, set_latest=False)
        time.sleep(0.5)
        assert {v for _, v in seen} == {1}, "a sheet was served before LATEST pointed at it"
        n_before = len(seen)
        point_latest(sheets, 2)
        t0 = time.monotonic()
        while not any(v == 2 for _, v in seen[n_before:]):
            assert time.monotonic() - t0 < 5, "v2 never served"
            time.sleep(0.01)
        switch_s = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_server(server)
    assert not errors, errors[:3]
    assert len(seen) > 50
    for n in range(4):  # each client: v1 ... v1 v2 ... v2, never back
        vs = [v for c, v in seen if c == n]
        assert vs == sorted(vs) and vs[-1] == 2
    assert switch_s < 2


def test_failed_night_keeps_last_good_sheet_and_expiry_is_flagged(tmp_path):
    past = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=30)
    sheets = tmp_path / "sheets"
    publish_sheet(sheets, 1, past, valid_hours=24)  # expired 6 hours ago
    server = start_server(tmp_path, reload_seconds=0.05)
    try:
        c = server.client()
        r = c.get("/v1/price-sheet")
        assert r.status_code == 200 and r.headers["idlecap-sheet-status"] == "expired"
        assert r.headers["cache-control"] == "no-cache"
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["expired"] is True and "expired" in ready.json()["reason"]
        assert c.get("/v1/prices").headers["idlecap-sheet-status"] == "expired"
        # the night fails half-way: a broken v2 file that LATEST points at
        (sheets / f"{sheet_name(2)}.json").write_text('{"version": 2, "items": [')
        point_latest(sheets, 2)
        time.sleep(0.5)
        r = c.get("/v1/price-sheet")
        assert r.status_code == 200 and json.loads(r.content)["version"] == 1
        assert "not a complete price sheet" in c.get("/readyz", headers={"Authorization": f"Bearer {server.internal}"}).json()["last_reload_error"]
        assert httpx.get(f"{server.url}/readyz").json()["last_reload_error"] == "a sheet reload failed (an internal key sees why)"
        first = c.get("/v1/prices", params={"limit": 5}).json()  # a walk that starts on v1
        # the next night succeeds: v3 fresh, served and ready
        publish_sheet(sheets, 3)
        t0 = time.monotonic()
        while c.get("/v1/price-sheet").headers["idlecap-sheet-version"] != "3":
            assert time.monotonic() - t0 < 5
            time.sleep(0.05)
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["ready"] is True and ready["last_reload_error"] is None
        assert [s["version"] for s in c.get("/v1/price-sheets").json()["sheets"]] == [3, 1]  # v2 never published
        r = c.get("/v1/price-sheet/2")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        # the walk begun on v1 continues on v1 after the switch, then ends
        nxt = c.get("/v1/prices", params={"limit": 5, "page_token": first["next_page_token"]}).json()
        v1_items = json.loads(c.get("/v1/price-sheet/1").content)["items"]
        assert nxt["sheet_version"] == 1 and first["items"] + nxt["items"] == v1_items[:10]
    finally:
        stop_server(server)


def test_no_sheet_yet_is_503_then_the_first_is_served(tmp_path):
    server = start_server(tmp_path, reload_seconds=0.05)
    try:
        c = server.client()
        r = c.get("/v1/price-sheet")
        assert r.status_code == 503 and r.json()["error"] == "no_sheet"
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        publish_sheet(tmp_path / "sheets", 1)
        t0 = time.monotonic()
        while c.get("/v1/price-sheet").status_code != 200:
            assert time.monotonic() - t0 < 5
            time.sleep(0.05)
        assert hashlib.sha256(c.get("/v1/price-sheet").content).hexdigest()[:32] == \
            c.get("/v1/price-sheet").headers["etag"].strip('"')
    finally:
        stop_server(server)
