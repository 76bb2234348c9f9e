"""Bookings: what customers took from a published sheet (input to the demand refit).

Rows are validated one by one; a bad row is rejected with a reason and the rest load. A booking
must name a published item (sheet_version, pool, product, start), book 1..gpus_offered GPUs at a
positive price; booking_id makes loading idempotent (a known id is skipped, never duplicated).
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

COLUMNS = ["booking_id", "sheet_version", "pool", "product", "start", "gpus", "price_per_gpu_hour", "booked_at"]


@dataclass
class BookingLoad:
    rows_in: int
    loaded: int
    duplicate: int
    rejected: pd.DataFrame  # the rejected rows with `reason`


def load_bookings(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> BookingLoad:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bookings file lacks column(s) {missing}; expected {COLUMNS} (+ optional customer)")
    df = frame.copy()
    df["customer"] = df["customer"] if "customer" in df else None
    df["line"] = range(2, len(df) + 2)
    for c in ("start", "booked_at"):
        df[c] = pd.to_datetime(df[c], utc=True, errors="coerce")
    for c in ("sheet_version", "gpus", "price_per_gpu_hour"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    items = con.execute("SELECT version AS sheet_version, pool, product, start, gpus_offered FROM price_sheet_items "
                        "WHERE offered").df()
    j = df.merge(items, on=["sheet_version", "pool", "product", "start"], how="left")
    reason = pd.Series("", index=j.index)
    checks = [
        (j["booking_id"].isna() | (j["booking_id"].astype(str).str.strip() == ""), "missing booking_id"),
        (j["start"].isna() | j["booked_at"].isna(), "unparseable start or booked_at"),
        (~(j["gpus"] > 0) | (j["gpus"] % 1 != 0), "gpus must be a positive integer"),
        (~(j["price_per_gpu_hour"] > 0), "price_per_gpu_hour must be > 0"),
        (j["gpus_offered"].isna(), "no such offered item (sheet_version, pool, product, start)"),
        (j["gpus"] > j["gpus_offered"], "more GPUs than the item offered"),
        (j.duplicated("booking_id", keep="first"), "booking_id repeated in the file"),
    ]
    for mask, why in checks:
        reason = reason.where(~(mask.fillna(True) & (reason == "")), why)
    known = set(con.execute("SELECT booking_id FROM bookings").df()["booking_id"])
    dup_all = j["booking_id"].astype(str).isin(known) & (reason == "")
    # an item cannot be sold twice: bookings already stored plus this file's, in file order
    booked = con.execute("SELECT sheet_version, pool, product, start, sum(gpus) AS booked FROM bookings "
                         "GROUP BY ALL").df()
    j = j.merge(booked, on=["sheet_version", "pool", "product", "start"], how="left")
    j["booked"] = j["booked"].fillna(0)
    take = j["gpus"].where((reason == "") & ~dup_all, 0)
    running = take.groupby([j["sheet_version"], j["pool"], j["product"], j["start"]]).cumsum()
    over = (reason == "") & ~dup_all & (j["booked"] + running > j["gpus_offered"])
    reason = reason.where(~over, "the item is sold out (earlier bookings + this one exceed gpus_offered)")
    ok = j[reason == ""]
    dup = ok["booking_id"].astype(str).isin(known)
    new = ok[~dup].assign(booking_id=lambda d: d["booking_id"].astype(str), gpus=lambda d: d["gpus"].astype(int),
                          sheet_version=lambda d: d["sheet_version"].astype(int))
    con.execute("BEGIN TRANSACTION")
    try:
        if len(new):
            con.register("new_bookings", new[COLUMNS + ["customer"]])
            con.execute("INSERT INTO bookings SELECT * FROM new_bookings")
            con.unregister("new_bookings")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    rejected = j[reason != ""].assign(reason=reason[reason != ""])[["line", *COLUMNS, "reason"]]
    return BookingLoad(len(df), len(new), int(dup.sum()), rejected.reset_index(drop=True))
