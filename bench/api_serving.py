"""Leasing API throughput and latency next to a bare Starlette app serving the same bytes.

Both servers run as separate uvicorn processes (uvloop + httptools, one worker) and are loaded
from this process by bench/http_load.py: `concurrency` keep-alive clients for `duration` seconds
per round. Rounds alternate bare/idlecap so that noise from the shared machine hits both; the
ratio is the median over rounds. The idlecap server runs as users run it (`idlecap serve`,
API-key check, access log on, written to a file).

Endpoints: the current sheet, a /v1/prices page, and the sheet's 304 (If-None-Match with the
ETag), each as a customer key sees it. The machine load (1-minute load average) is printed before
and after the run.

Target (issue 15): on every endpoint idlecap >= 0.90 of the bare app's requests/s (median of the
per-round ratios) and idlecap's p99 <= 1.5 x the bare app's p99 (medians over rounds) at 50 clients.
Exit status 0 when met, 1 when missed, 2 when the two servers did not return the same bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from api.keys import create_key  # noqa: E402
from http_load import run_load  # noqa: E402
from pricing.sheet import PriceSheet, public_items, publish  # noqa: E402

PRICES_PATH = "/v1/prices?gpu_model=V100&product=spot&limit=50"
NOT_MODIFIED = "/v1/price-sheet (304)"
RATIO_TARGET, P99_FACTOR = 0.90, 1.5


def sheet_items(pools: int, valid_from: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """A sheet shaped like a nightly one: 7 days of 6-hour spot blocks and 1/7/30-day reserved per pool."""
    rng = np.random.default_rng(seed)
    rows = []
    models = ["V100", "A100-80GB", "H100"]
    for p in range(pools):
        model, gpus = models[p % 3], int(rng.choice([8, 16, 32, 64]))
        ref = {"V100": 3.06, "A100-80GB": 5.12, "H100": 6.88}[model]
        for k in range(28):
            rows.append(dict(pool=f"pool-{p:03d}", gpu_model=model, product="spot", hours=6,
                             start=valid_from + pd.Timedelta(hours=6 * k), price_per_gpu_hour=ref * rng.uniform(0.3, 0.6),
                             gpus_offered=int(rng.integers(1, gpus)), interruption_risk=rng.uniform(0.05, 0.6),
                             reference_product="spot", reference_price=ref * 0.7))
        for prod, days in (("reserved_1d", 1), ("reserved_7d", 7), ("reserved_30d", 30)):
            rows.append(dict(pool=f"pool-{p:03d}", gpu_model=model, product=prod, hours=24 * days,
                             start=valid_from.ceil("D"), price_per_gpu_hour=ref * rng.uniform(0.5, 0.8),
                             gpus_offered=max(1, gpus // 4), interruption_risk=0.0, reference_product="on_demand",
                             reference_price=ref))
    df = pd.DataFrame(rows)
    df["end"] = df["start"] + pd.to_timedelta(df["hours"], unit="h")
    df["region"], df["reference_provider"], df["reference_region"] = "dc1", "aws", "us-east-1"
    df["reference_sku"], df["reference_as_of"], df["floor"] = "p5.48xlarge", pd.Timestamp("2025-11-30"), 0.5
    df["discount_vs_reference"] = 1 - df["price_per_gpu_hour"] / df["reference_price"]
    df["guardrails"] = [["max_change"] if i % 5 == 0 else [] for i in range(len(df))]
    return df


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer within 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", type=int, default=16, help="pools in the sheet (16 -> 496 items)")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per round, warm-up included")
    ap.add_argument("--rounds", type=int, default=5, help="bare/idlecap pairs per endpoint (single rounds vary by +-25%% here)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="idlecap-bench-api-"))
    valid_from = pd.Timestamp.now(tz="UTC").floor("h")
    sheet = PriceSheet(version=1, generated_at=pd.Timestamp.now(tz="UTC").floor("s"), valid_from=valid_from,
                       valid_until=valid_from + pd.Timedelta(hours=24), data_through=valid_from - pd.Timedelta(hours=1),
                       mlflow_run_id="bench", forecast_id="bench", items=public_items(sheet_items(args.pools, valid_from)))
    publish(sheet, work / "sheets")
    key, _ = create_key(work / "api_keys.json", "customer", "bench")
    auth = {"Authorization": f"Bearer {key}"}

    api_port, bare_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLECAP_")}
    env["IDLECAP_VAR_DIR"] = str(work)
    api_log = (work / "api.log").open("w")
    api = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(api_port)],
                           cwd=REPO, env=env, stdout=api_log, stderr=subprocess.STDOUT)
    bare = None
    try:
        wait_up(f"http://127.0.0.1:{api_port}/healthz", api, "idlecap serve")
        replies = {p: httpx.get(f"http://127.0.0.1:{api_port}{p}", headers=auth) for p in ("/v1/price-sheet", PRICES_PATH)}
        bodies = {p: r.content for p, r in replies.items()}
        etag = replies["/v1/price-sheet"].headers["etag"]
        routes = {}
        for i, (p, body) in enumerate(bodies.items()):
            f = work / f"route{i}.json"
            f.write_bytes(body)
            routes[p] = {"file": str(f), "etag": etag} if p == "/v1/price-sheet" else str(f)
        (work / "routes.json").write_text(json.dumps(routes))
        bare = subprocess.Popen([sys.executable, str(REPO / "bench" / "bare_app.py"), "--port", str(bare_port),
                                 "--routes", str(work / "routes.json")], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        wait_up(f"http://127.0.0.1:{bare_port}/", bare, "bare app")
        for p, body in bodies.items():
            if httpx.get(f"http://127.0.0.1:{bare_port}{p}").content != body:
                print(f"bare app does not return the API's bytes for {p}")
                return 2
        inm = {"If-None-Match": etag}
        for port, h in ((bare_port, inm), (api_port, {**auth, **inm})):
            if httpx.get(f"http://127.0.0.1:{port}/v1/price-sheet", headers=h).status_code != 304:
                print("both apps must answer the conditional GET with 304")
                return 2
        load0 = os.getloadavg()
        print(f"sheet: {len(sheet.items)} items, {len(bodies['/v1/price-sheet']):,} bytes (customer view); "
              f"{PRICES_PATH}: {len(bodies[PRICES_PATH]):,} bytes; {args.concurrency} clients, "
              f"{args.rounds} x {args.duration:.0f} s rounds per app and endpoint; "
              f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} CPUs)")
        endpoints = {"/v1/price-sheet": ("/v1/price-sheet", {}), PRICES_PATH: (PRICES_PATH, {}),
                     NOT_MODIFIED: ("/v1/price-sheet", inm)}
        results: dict[tuple[str, str], list[dict]] = {}
        for label, (path, extra) in endpoints.items():
            for r in range(args.rounds):
                order = [("bare", bare_port, extra), ("idlecap", api_port, {**auth, **extra})]
                for name, port, headers in (order if r % 2 == 0 else order[::-1]):
                    res = run_load("127.0.0.1", port, [path], headers, concurrency=args.concurrency,
                                   duration_s=args.duration, warmup_s=1.0)
                    if res["errors"]:
                        print(f"{name} {path}: {res['errors']} errors {res['errors_by_status']}")
                        return 2
                    results.setdefault((label, name), []).append(res)
    finally:
        for proc in (api, bare):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        api_log.close()

    load1 = os.getloadavg()
    ok = True
    print(f"\n{'endpoint':<48} {'app':<8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}  ratio (median of rounds); p99 / bare")
    for label in endpoints:
        ratios = [a["rps"] / b["rps"] for a, b in zip(results[(label, "idlecap")], results[(label, "bare")])]
        p99s = {}
        for name in ("bare", "idlecap"):
            rs = results[(label, name)]
            rps = statistics.median(x["rps"] for x in rs)
            p50 = statistics.median(x["p50_ms"] for x in rs)
            p99s[name] = statistics.median(x["p99_ms"] for x in rs)
            extra = ""
            if name == "idlecap":
                extra = (f"  {statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)});"
                         f" {p99s['idlecap'] / p99s['bare']:.2f}")
            print(f"{label:<48} {name:<8} {rps:>8.0f} {p50:>7.1f} {p99s[name]:>7.1f}{extra}")
        ok &= statistics.median(ratios) >= RATIO_TARGET and p99s["idlecap"] <= P99_FACTOR * p99s["bare"]
    lines = sum(1 for _ in (work / "api.log").open())
    print(f"\naccess log lines written by the API: {lines:,}")
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} ({os.cpu_count()} CPUs)")
    print(f"target (>= {RATIO_TARGET:.2f} x bare req/s and p99 <= {P99_FACTOR:g} x bare p99 on every endpoint):",
          "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
