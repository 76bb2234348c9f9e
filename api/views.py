"""What each key scope sees of a published sheet.

The published file keeps everything (floors, run ids, forecast ids, override notes); the API
decides what a scope sees. Customers get an allowlist: what they buy (price and its unit, term,
window, GPUs, interruption risk, reference and saving, a readable location), so a field pricing
adds later stays internal until it is listed here. Internal keys get the customer fields plus
everything else the file holds. Both views are encoded once per sheet version (`SheetView`), so
serving one is a dict lookup by scope.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import orjson

from pricing.sheet import INTERNAL_HEADER_FIELDS, INTERNAL_ITEM_FIELDS

SCOPES = ("customer", "internal")
UNKNOWN_LOCATION = "unknown"
CUSTOMER_HEADER = ("version", "generated_at", "valid_from", "valid_until", "data_through", "currency")
REFERENCE_FIELDS = ("provider", "region", "sku", "product", "gpu_model", "price", "performance_factor",
                    "equivalent_price", "as_of")
INTERRUPTION_RISK_MEANING = (
    "Spot: the forecast probability that some of the GPUs offered in the block are reclaimed for internal "
    "training before the block ends (0 = never seen, 1 = certain); a reclaimed lease stops early and is billed "
    "only for the hours used. Reserved: capacity is guaranteed for the whole term (0).")


@dataclass(frozen=True)
class SheetView:
    """One scope's rendering of a sheet: the body GET returns, its ETag, each item's bytes, the history row."""

    body: bytes
    etag: str
    item_bytes: list[bytes]
    header: dict[str, Any]
    summary: dict[str, Any]


def _hours(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 3600)


def _term(product: str, hours: int) -> str:
    if product == "spot":
        return f"spot, {hours}-hour block, may be reclaimed"
    days = hours / 24
    return f"reserved for {days:g} day{'s' if days != 1 else ''}, guaranteed"


def location_of(region: str, locations: Mapping[str, str]) -> str:
    return locations.get(region, UNKNOWN_LOCATION)


def customer_item(item: dict[str, Any], start: datetime, end: datetime, currency: str,
                  locations: Mapping[str, str]) -> dict[str, Any]:
    """The allowlisted fields of a published item, plus the ones a customer needs to read it."""
    ref = item.get("reference") or {}
    hours = _hours(start, end)
    price, eq = item.get("price_per_gpu_hour"), ref.get("equivalent_price")
    saving = item.get("undercut_usd_per_gpu_hour")
    if saving is None and price is not None and eq is not None:
        saving = round(eq - price, 4)
    return {
        "pool": item["pool"], "gpu_model": item["gpu_model"], "gpu_class": item.get("gpu_class"),
        "region": item["region"], "location": location_of(item["region"], locations),
        "product": item["product"], "term": _term(item["product"], hours), "start": item["start"], "end": item["end"],
        "hours": hours, "price_per_gpu_hour": price, "price_unit": f"{currency} per GPU-hour",
        "gpus_offered": item["gpus_offered"], "interruption_risk": item.get("interruption_risk"),
        "reference": {k: ref.get(k) for k in REFERENCE_FIELDS},
        "saving_per_gpu_hour": saving, "discount_vs_reference": item.get("discount_vs_reference"),
    }


def internal_item(item: dict[str, Any], customer: dict[str, Any]) -> dict[str, Any]:
    """The customer's fields, then every other field the file holds (floor, guardrails, ...)."""
    extra = {k: v for k, v in item.items() if k not in customer}
    return {**customer, **extra, **{k: item.get(k) for k in INTERNAL_ITEM_FIELDS}}


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def build_views(doc: dict[str, Any], starts: list[datetime], ends: list[datetime],
                locations: Mapping[str, str]) -> dict[str, SheetView]:
    """Both scopes' encodings of one published sheet document."""
    currency = doc["currency"]
    cust_items = [customer_item(it, s, e, currency, locations) for it, s, e in zip(doc["items"], starts, ends)]
    int_items = [internal_item(it, c) for it, c in zip(doc["items"], cust_items)]
    cust_head = {k: doc[k] for k in CUSTOMER_HEADER}
    cust_head["interruption_risk_meaning"] = INTERRUPTION_RISK_MEANING
    int_head = {**cust_head, **{k: doc.get(k) for k in INTERNAL_HEADER_FIELDS}}
    views = {}
    for scope, head, items in (("customer", cust_head, cust_items), ("internal", int_head, int_items)):
        item_bytes = [orjson.dumps(i) for i in items]
        body = orjson.dumps(head)[:-1] + b',"items":[' + b",".join(item_bytes) + b"]}"
        views[scope] = SheetView(body=body, etag=_etag(body), item_bytes=item_bytes, header=head,
                                 summary={**{k: v for k, v in head.items() if k != "interruption_risk_meaning"},
                                          "items": len(items)})
    return views


def leaked(obj: Any, internal: frozenset[str] = frozenset(INTERNAL_ITEM_FIELDS + INTERNAL_HEADER_FIELDS)) -> list[str]:
    """Internal field names anywhere in a decoded reply (for tests and a paranoid check)."""
    out: list[str] = []
    if isinstance(obj, dict):
        out += [k for k in obj if k in internal]
        for v in obj.values():
            out += leaked(v, internal)
    elif isinstance(obj, list):
        for v in obj:
            out += leaked(v, internal)
    return out
