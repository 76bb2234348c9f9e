"""api.store: follows LATEST, never sees a half-written sheet, keeps the last good one."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from api.store import SheetStore, SheetUnreadable, load_sheet
from pricing.sheet import LATEST, point_latest, sheet_name

from api_helpers import make_sheet, publish_sheet

NOW = pd.Timestamp("2026-01-05 10:00", tz="UTC")


def test_empty_dir_has_no_sheet_then_picks_up_the_first(tmp_path):
    store = SheetStore(tmp_path)
    assert store.current is None and store.versions() == []
    publish_sheet(tmp_path, 1, NOW)
    assert store.refresh() is True
    assert store.current.version == 1
    assert store.refresh() is False  # nothing changed: one stat, no reload


def test_each_scope_has_its_view_and_a_content_etag(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    s = load_sheet(tmp_path / f"{sheet_name(1)}.json", {"dc2": "Frankfurt, Germany"})
    published = json.loads((tmp_path / f"{sheet_name(1)}.json").read_bytes())
    cust, internal = s.view("customer"), s.view("internal")
    for v in (cust, internal):
        assert v.etag.strip('"') == hashlib.sha256(v.body).hexdigest()[:32]
        assert json.loads(v.body)["items"] == [json.loads(b) for b in v.item_bytes]
    assert cust.etag != internal.etag
    c, i = json.loads(cust.body), json.loads(internal.body)
    assert "floor" not in c["items"][0] and "mlflow_run_id" not in c and "content_sha256" not in c
    assert i["items"][0]["floor"] == published["items"][0]["floor"] and i["mlflow_run_id"] == "run1"
    assert {k: v for k, v in i["items"][0].items() if k in c["items"][0]} == c["items"][0]  # internal = customer + more
    assert {it["location"] for it in c["items"]} == {"Frankfurt, Germany", "unknown"}


def test_half_written_files_are_invisible(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    store = SheetStore(tmp_path)
    # a writer mid-way: temp files and a Parquet, no JSON, LATEST not moved
    (tmp_path / f".{sheet_name(2)}.json.abc.tmp").write_text('{"version": 2, "items": [')
    (tmp_path / f"{sheet_name(2)}.parquet").write_bytes(b"PAR1")
    assert store.refresh() is False
    assert store.current.version == 1
    # the JSON is complete but LATEST not pointed yet (history commit pending): still v1
    make_v2 = make_sheet(2, NOW + pd.Timedelta(hours=24))
    from pricing.sheet import publish

    (tmp_path / f"{sheet_name(2)}.parquet").unlink()
    publish(make_v2, tmp_path, set_latest=False)
    store.refresh()
    assert store.current.version == 1 and store.versions() == [1] and store.get(2) is None
    point_latest(tmp_path, 2)
    assert store.refresh() and store.current.version == 2 and store.versions() == [2, 1]


def test_unreadable_latest_keeps_the_last_good_sheet(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    store = SheetStore(tmp_path)
    (tmp_path / f"{sheet_name(2)}.json").write_text('{"version": 2, "items": [')  # corrupt
    point_latest(tmp_path, 2)
    assert store.refresh() is False
    assert store.current.version == 1
    assert "not a complete price sheet" in store.last_error
    (tmp_path / LATEST).write_text("../../etc/passwd\n")
    store.refresh()
    assert store.current.version == 1 and "not a sheet file" in store.last_error


def test_latest_never_goes_backwards(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    publish_sheet(tmp_path, 2, NOW)
    store = SheetStore(tmp_path)
    point_latest(tmp_path, 1)
    store.refresh()
    assert store.current.version == 2 and "points back" in store.last_error


def test_history_versions_and_cache(tmp_path):
    for v in range(1, 13):
        publish_sheet(tmp_path, v, NOW + pd.Timedelta(hours=v))
    store = SheetStore(tmp_path, cache_size=3)
    assert store.versions() == list(range(12, 0, -1))
    for v in range(1, 13):
        assert store.get(v).version == v
        assert store.summary(v)["items"] == len(store.get(v).items)
    assert len(store._cache) <= 3
    assert store.get(13) is None and store.get(0) is None


def test_load_sheet_rejects_a_renamed_file(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    (tmp_path / f"{sheet_name(1)}.json").rename(tmp_path / f"{sheet_name(7)}.json")
    with pytest.raises(SheetUnreadable, match="does not match version"):
        load_sheet(tmp_path / f"{sheet_name(7)}.json")


def test_a_sheet_arriving_after_latest_or_repaired_in_place_is_picked_up(tmp_path):
    """rsync copies LATEST before the sheet (L < p); an operator may fix a broken file in place."""
    publish_sheet(tmp_path, 1, NOW)
    store = SheetStore(tmp_path)
    point_latest(tmp_path, 2)
    assert store.refresh() is False and store.current.version == 1
    from pricing.sheet import publish

    publish(make_sheet(2, NOW), tmp_path, set_latest=False)
    assert store.refresh() is True and store.current.version == 2
    good = (tmp_path / f"{sheet_name(3)}.json")
    publish(make_sheet(3, NOW), tmp_path, set_latest=False)
    data = good.read_bytes()
    good.unlink()
    good.write_bytes(data[: len(data) // 2])
    point_latest(tmp_path, 3)
    assert store.refresh() is False and store.current.version == 2 and store.last_error
    good.unlink()
    good.write_bytes(data)
    assert store.refresh() is True and store.current.version == 3 and store.last_error is None


def test_damage_inside_items_keeps_the_last_sheet(tmp_path):
    publish_sheet(tmp_path, 1, NOW)
    store = SheetStore(tmp_path)
    doc = make_sheet(2, NOW).to_dict()
    doc["items"][3]["start"] = None
    (tmp_path / f"{sheet_name(2)}.json").write_text(json.dumps(doc))
    point_latest(tmp_path, 2)
    assert store.refresh() is False and store.current.version == 1
    assert "not a complete price sheet" in store.last_error and str(tmp_path) not in store.last_error
    (tmp_path / LATEST).write_bytes(b"\xff\xfe\n")
    assert store.refresh() is False and store.current.version == 1
    assert store.get(2) is None  # a broken file is never served as history either
