"""pricing.sheet: the public price-sheet contract, content hash, atomic immutable publishing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing.sheet import (
    LATEST,
    PriceSheet,
    SheetExistsError,
    items_table,
    latest_sheet_path,
    public_items,
    publish,
    sheet_name,
    read_sheet,
)

T0 = pd.Timestamp("2025-03-03 13:00", tz="UTC")
HEADER_FIELDS = {"version", "generated_at", "valid_from", "valid_until", "data_through", "mlflow_run_id", "currency",
                 "items"}


def engine_items() -> pd.DataFrame:
    """Offered items as pricing.engine.price_fleet returns them (the columns public_items reads)."""
    base = dict(gpu_model="H100", region="eu-1", reference_region="us-east-1",
                reference_as_of=pd.Timestamp("2025-02-01"), floor=0.61)
    rows = [
        dict(pool="p1", product="spot", start=T0 + pd.Timedelta(hours=5), hours=6, price_per_gpu_hour=2.1,
             gpus_offered=12, interruption_risk=0.12, reference_provider="aws", reference_sku="p5.48xlarge",
             reference_product="spot", reference_price=3.0, guardrails=["max_change"]),
        dict(pool="p1", product="spot", start=T0 + pd.Timedelta(hours=11), hours=6, price_per_gpu_hour=2.3,
             gpus_offered=8, interruption_risk=0.3, reference_provider="aws", reference_sku="p5.48xlarge",
             reference_product="spot", reference_price=3.0, guardrails=[]),
        dict(pool="p1", product="reserved_30d", start=T0.ceil("D"), hours=720, price_per_gpu_hour=3.9,
             gpus_offered=20, interruption_risk=0.0, reference_provider="azure", reference_sku="ND96isr_H100_v5",
             reference_product="reserved_1y", reference_price=4.5, guardrails=["spot_parity", "hold_last:stale"]),
    ]
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["end"] = df["start"] + pd.to_timedelta(df["hours"], unit="h")
    df["discount_vs_reference"] = 1 - df["price_per_gpu_hour"] / df["reference_price"]
    return df


def make_sheet(version: int, items: pd.DataFrame | None = None, **kw) -> PriceSheet:
    args = dict(
        version=version, generated_at=pd.Timestamp("2025-03-03 12:41:07", tz="UTC") + pd.Timedelta(minutes=version),
        valid_from=T0, valid_until=T0 + pd.Timedelta(hours=24), data_through=T0 - pd.Timedelta(hours=2),
        mlflow_run_id=f"run{version}", forecast_id="fc-1",
        items=public_items(engine_items() if items is None else items),
    )
    args.update(kw)
    return PriceSheet(**args)


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_publish_writes_the_contract(tmp_path: Path):
    sheet = make_sheet(7)
    jpath, ppath = publish(sheet, tmp_path / "sheets")
    d = tmp_path / "sheets"
    assert jpath == d / "price-sheet-000007.json" and ppath == d / "price-sheet-000007.parquet"
    assert sorted(p.name for p in d.iterdir()) == sorted([LATEST, ppath.name, jpath.name])
    assert (d / LATEST).read_text().strip() == jpath.name

    doc = read_sheet(jpath)
    assert HEADER_FIELDS <= set(doc)
    assert doc["version"] == 7 and doc["currency"] == "USD" and doc["mlflow_run_id"] == "run7"
    assert doc["valid_from"] == "2025-03-03T13:00:00Z" and doc["valid_until"] == "2025-03-04T13:00:00Z"
    assert doc["data_through"] == "2025-03-03T11:00:00Z" and doc["generated_at"] == "2025-03-03T12:48:07Z"
    assert doc["content_sha256"] == sheet.content_sha256
    assert len(doc["items"]) == 3
    for it in doc["items"]:
        assert {"pool", "gpu_model", "region", "product", "start", "end", "price_per_gpu_hour", "gpus_offered",
                "interruption_risk", "reference", "discount_vs_reference", "floor", "guardrails"} <= set(it)
        ref = it["reference"]
        assert {"provider", "sku", "product", "price"} <= set(ref)
        assert it["discount_vs_reference"] == pytest.approx(1 - it["price_per_gpu_hour"] / ref["price"], abs=1e-4)
        assert it["product"] in {"spot", "reserved_1d", "reserved_7d", "reserved_30d"}
        assert isinstance(it["gpus_offered"], int) and isinstance(it["guardrails"], list)
    res = next(it for it in doc["items"] if it["product"] == "reserved_30d")
    assert res["reference"] == {"provider": "azure", "region": "us-east-1", "sku": "ND96isr_H100_v5",
                                "product": "reserved_1y", "price": 4.5, "as_of": "2025-02-01", "gpu_model": None,
                                "performance_factor": 1.0, "equivalent_price": 4.5}
    assert res["start"] == "2025-03-04T00:00:00Z" and res["end"] == "2025-04-03T00:00:00Z"
    assert res["guardrails"] == ["spot_parity", "hold_last:stale"]

    flat = pd.read_parquet(ppath)
    assert len(flat) == 3
    assert (flat["sheet_version"] == 7).all()
    assert sorted(flat["price_per_gpu_hour"]) == [2.1, 2.3, 3.9]
    assert set(flat["reference_provider"]) == {"aws", "azure"}
    pd.testing.assert_frame_equal(flat[items_table(doc["items"]).columns].reset_index(drop=True),
                                  items_table(doc["items"]), check_dtype=False)


def test_publishing_a_version_twice_is_refused_and_changes_nothing(tmp_path: Path):
    publish(make_sheet(1), tmp_path)
    before = snapshot(tmp_path)
    other = make_sheet(1, items=engine_items().assign(price_per_gpu_hour=9.99))
    with pytest.raises(SheetExistsError):
        publish(other, tmp_path)
    assert snapshot(tmp_path) == before
    assert issubclass(SheetExistsError, FileExistsError)


def test_no_temp_files_are_left_behind(tmp_path: Path):
    for v in (1, 2, 3):
        publish(make_sheet(v), tmp_path)
    with pytest.raises(SheetExistsError):
        publish(make_sheet(2), tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LATEST] + [f"price-sheet-{v:06d}.{ext}" for v in (1, 2, 3) for ext in ("json", "parquet")]
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]


def test_latest_sheet_path_picks_the_newest(tmp_path: Path):
    assert latest_sheet_path(tmp_path) is None
    for v in (1, 2, 3):
        jpath, _ = publish(make_sheet(v), tmp_path)
        assert latest_sheet_path(tmp_path) == jpath
    assert read_sheet(latest_sheet_path(tmp_path))["version"] == 3
    # LATEST missing or naming a file that is gone: fall back to the highest complete version
    (tmp_path / LATEST).unlink()
    assert latest_sheet_path(tmp_path) == tmp_path / "price-sheet-000003.json"
    (tmp_path / LATEST).write_text("price-sheet-000009.json\n")
    assert latest_sheet_path(tmp_path) == tmp_path / "price-sheet-000003.json"
    # a parquet without its JSON (crash between the two writes) is not a complete sheet
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "price-sheet-000004.parquet")
    assert latest_sheet_path(tmp_path) == tmp_path / "price-sheet-000003.json"


def test_content_hash_ignores_run_identity_but_not_prices():
    a = make_sheet(1)
    b = make_sheet(2, mlflow_run_id="other", generated_at=pd.Timestamp("2030-01-01", tz="UTC"))
    assert a.content_sha256 == b.content_sha256
    assert a.to_dict()["version"] != b.to_dict()["version"]

    items = engine_items()
    items.loc[1, "price_per_gpu_hour"] = 2.31
    assert make_sheet(1, items=items).content_sha256 != a.content_sha256
    items = engine_items()
    items.loc[0, "gpus_offered"] = 11
    assert make_sheet(1, items=items).content_sha256 != a.content_sha256
    later = make_sheet(1, valid_from=T0 + pd.Timedelta(hours=1))
    assert later.content_sha256 != a.content_sha256
    # row order of the engine's frame does not matter: items are sorted (pool, product, start)
    assert make_sheet(1, items=engine_items().iloc[::-1]).content_sha256 == a.content_sha256


def test_missing_numbers_are_null_not_nan(tmp_path: Path):
    items = engine_items()
    items.loc[2, "interruption_risk"] = np.nan
    jpath, _ = publish(make_sheet(1, items=items), tmp_path)
    text = jpath.read_text()
    assert "NaN" not in text
    doc = json.loads(text)
    assert [it["interruption_risk"] for it in doc["items"] if it["product"] == "reserved_30d"] == [None]


def test_a_crashed_attempt_does_not_block_the_version(tmp_path: Path) -> None:
    """A Parquet without its JSON was never published: the retry replaces it and publishes."""
    sheet = make_sheet(1)
    (tmp_path / f"{sheet_name(1)}.parquet").write_bytes(b"half-written")
    jpath, ppath = publish(sheet, tmp_path)
    assert json.loads(jpath.read_text())["version"] == 1
    assert pd.read_parquet(ppath)["sheet_version"].iloc[0] == 1


def test_versions_are_never_reused_after_a_crash(tmp_path: Path, con) -> None:
    """A JSON on disk without its history row (crash before COMMIT) still takes its version."""
    from pricing.sheet import highest_version
    from warehouse.sheets import next_version

    publish(make_sheet(1), tmp_path, set_latest=False)
    assert highest_version(tmp_path) == 1 and next_version(con, highest_version(tmp_path)) == 2
    assert not (tmp_path / "LATEST").exists()  # readers were never pointed at it
