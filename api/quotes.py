"""Quotes: what N GPUs of a model cost for a product and start, drawn from a sheet's offered items.

A quote covers consecutive periods: one reserved term, or `hours` of spot made of the sheet's
spot blocks. In each period the cheapest items are drawn first (then the lowest interruption
risk), across pools unless `single_pool` asks for one pool for the whole lease; offers riskier
than `max_interruption_risk` are left out. A start that is not one of the product's starts in the
sheet is an input error (422, with the valid starts); a valid start the sheet cannot fill is a
capacity refusal (409). The quote says what the same GPU-hours cost at the reference prices, how
likely any part of the lease is reclaimed, and whether the sheet is still fresh. A quote does not
reserve anything: bookings are recorded by the leasing desk and priced into the next sheet.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from api.store import LoadedSheet, parse_ts
from api.views import location_of


def sheet_locations(sheet: LoadedSheet) -> dict[str, str]:
    """Region -> location as the sheet's customer view shows it."""
    return {r: location_of(r, {}) for r in {it["region"] for it in sheet.items}}


class QuoteInvalid(ValueError):
    """The request cannot be quoted as asked (422); `code` and `detail` say what is valid."""

    def __init__(self, message: str, code: str = "invalid_request", detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.detail = code, detail


class CapacityShort(Exception):
    """The offered capacity cannot cover the request (409); `detail` says how much there is."""

    def __init__(self, message: str, detail: dict[str, Any]):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class QuoteAsk:
    gpu_model: str
    product: str
    start: datetime
    gpus: int
    hours: int | None = None
    region: str | None = None
    pool: str | None = None
    single_pool: bool = False
    max_interruption_risk: float | None = None


ISO = "%Y-%m-%dT%H:%M:%SZ"


def _iso(t: datetime) -> str:
    return t.strftime(ISO)


def _check_start(sheet: LoadedSheet, ask: QuoteAsk, cands: list[tuple[int, dict[str, Any]]]) -> None:
    """422 unless `start` is one of the product's starts in the sheet (a block boundary inside its horizon)."""
    grid = sorted({sheet.starts[i] for i, it in enumerate(sheet.items) if it["product"] == ask.product})
    if ask.start in set(grid):
        return
    mine = sorted({sheet.starts[i] for i, _ in cands}) or grid
    length = next((sheet.ends[i] - sheet.starts[i] for i, it in enumerate(sheet.items) if it["product"] == ask.product),
                  None)
    what = (f"spot is sold in {length / timedelta(hours=1):g}-hour blocks" if ask.product == "spot" and length
            else f"{ask.product} starts only at the listed times")
    shown = ", ".join(s.strftime("%Y-%m-%dT%H:%MZ") for s in mine[:4]) + (", ..." if len(mine) > 4 else "")
    said = ask.start.isoformat().replace("+00:00", "Z")  # as sent, seconds and fractions included
    raise QuoteInvalid(
        f"start {said} is not a {ask.product} start in sheet v{sheet.version}: {what}; valid starts: "
        f"{shown or 'none'} ({len(mine)} in all, see detail.valid_starts)", "invalid_start",
        {"valid_starts": [_iso(s) for s in mine[:50]], "valid_starts_total": len(mine),
         "block_hours": length / timedelta(hours=1) if length else None})


def _periods(cands: list[tuple[int, dict[str, Any]]], sheet: LoadedSheet, ask: QuoteAsk) -> list[tuple[datetime, datetime]]:
    """The (start, end) periods the lease spans, from the items' own boundaries."""
    first = [i for i, it in cands if sheet.starts[i] == ask.start]
    if not first:
        starts = sorted({sheet.starts[i] for i, _ in cands})
        hint = ", ".join(s.strftime("%Y-%m-%dT%H:%MZ") for s in starts[:6]) or "none"
        raise CapacityShort(
            f"no {ask.product} {ask.gpu_model} is offered starting at {ask.start:%Y-%m-%dT%H:%MZ}"
            + (f" with interruption risk <= {ask.max_interruption_risk:g}" if ask.max_interruption_risk is not None else ""),
            {"requested_gpus": ask.gpus, "available_gpus": 0,
             "offered_starts": [_iso(s) for s in starts[:50]], "hint": f"offered starts: {hint}"},
        )
    end0 = parse_ts(sheet.items[first[0]]["end"])
    length = end0 - ask.start
    if ask.product != "spot":
        if ask.hours is not None and timedelta(hours=ask.hours) != length:
            raise QuoteInvalid(f"{ask.product} is a {length / timedelta(hours=1):.0f}-hour term; "
                               f"hours={ask.hours} does not match (leave hours out)")
        return [(ask.start, end0)]
    hours = ask.hours if ask.hours is not None else int(length / timedelta(hours=1))
    if timedelta(hours=hours) % length:
        raise QuoteInvalid(f"spot is sold in {length / timedelta(hours=1):.0f}-hour blocks; hours={hours} is not a multiple")
    n = int(timedelta(hours=hours) / length)
    last = max(sheet.starts[i] for i, _ in cands)
    if ask.start + (n - 1) * length > last:  # past the sheet's horizon: no need to look period by period
        raise CapacityShort(
            f"spot {ask.gpu_model} is offered until {last + length:%Y-%m-%dT%H:%MZ}; "
            f"{hours} hours from {ask.start:%Y-%m-%dT%H:%MZ} go past it",
            {"requested_gpus": ask.gpus, "available_gpus": 0, "offered_until": f"{last + length:%Y-%m-%dT%H:%M:%SZ}"},
        )
    return [(ask.start + k * length, ask.start + (k + 1) * length) for k in range(n)]


def _line(it: dict[str, Any], gpus: int, start: datetime, end: datetime, locations: Mapping[str, str]) -> dict[str, Any]:
    hours = (end - start) / timedelta(hours=1)
    ref = it.get("reference") or {}
    eq = ref.get("equivalent_price")
    return {
        "pool": it["pool"], "region": it["region"], "location": location_of(it["region"], locations),
        "start": it["start"], "end": it["end"], "gpus": gpus,
        "hours": hours, "price_per_gpu_hour": it["price_per_gpu_hour"],
        "subtotal": round(gpus * hours * it["price_per_gpu_hour"], 2), "interruption_risk": it.get("interruption_risk"),
        "reference_price_per_gpu_hour": eq, "reference_subtotal": round(gpus * hours * eq, 2) if eq is not None else None,
        "reference": {k: ref.get(k) for k in ("provider", "sku", "product")},
    }


def _on_sale(it: dict[str, Any]) -> bool:
    """GPUs offered at a price: an item without a finite price (a withdrawn offer) is not quoted."""
    p, g = it.get("price_per_gpu_hour"), it.get("gpus_offered")
    return (isinstance(p, (int, float)) and math.isfinite(p) and p > 0
            and isinstance(g, (int, float)) and math.isfinite(g) and g >= 1)


def _risk(it: dict[str, Any]) -> float:
    return float(it.get("interruption_risk") or 0.0)


def quote(sheet: LoadedSheet, ask: QuoteAsk, now: datetime | None = None,
          locations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The priced lines and total for `ask` on `sheet`; raises CapacityShort or QuoteInvalid."""
    if ask.start.tzinfo is None:
        raise QuoteInvalid("start needs a time zone, e.g. 2026-11-24T00:00:00Z")
    try:
        ask = replace(ask, start=ask.start.astimezone(timezone.utc))  # answers are in UTC, whatever offset was sent
    except OverflowError:
        raise QuoteInvalid("start is out of range: use a date-time between 1970 and 2999") from None
    now = now or datetime.now(timezone.utc)
    locations = locations if locations is not None else sheet_locations(sheet)
    offered = [(i, it) for i, it in enumerate(sheet.items)
               if ask.gpu_model in (it["gpu_model"], it.get("gpu_class")) and it["product"] == ask.product
               and (ask.region is None or it["region"] == ask.region) and (ask.pool is None or it["pool"] == ask.pool)
               and _on_sale(it)]
    cands = [(i, it) for i, it in offered
             if ask.max_interruption_risk is None or _risk(it) <= ask.max_interruption_risk]
    if offered:
        _check_start(sheet, ask, offered)
    if not cands and offered:
        least = min(_risk(it) for _, it in offered)
        raise CapacityShort(
            f"every {ask.product} {ask.gpu_model} offer has interruption risk above {ask.max_interruption_risk:g} "
            f"(the least risky: {least:g})",
            {"requested_gpus": ask.gpus, "available_gpus": 0, "least_interruption_risk": least})
    if not cands:
        offered = sorted({(it["gpu_model"], it["product"]) for it in sheet.items})
        raise CapacityShort(
            f"sheet v{sheet.version} offers no {ask.product} {ask.gpu_model}"
            + (f" in region {ask.region}" if ask.region else "") + (f" in pool {ask.pool}" if ask.pool else ""),
            {"offered": [{"gpu_model": g, "product": p} for g, p in offered]},
        )
    periods = _periods(cands, sheet, ask)
    by_start: dict[datetime, list[dict[str, Any]]] = {}
    for i, it in cands:
        by_start.setdefault(sheet.starts[i], []).append(it)
    by_period: list[list[dict[str, Any]]] = []
    for s, _ in periods:
        here = by_start.get(s, [])
        here.sort(key=lambda it: (it["price_per_gpu_hour"], it.get("interruption_risk") or 0.0, it["pool"]))
        by_period.append(here)
    if ask.single_pool:
        lines = _single_pool(by_period, periods, ask, locations)
    else:
        lines, short = [], []
        for (s, e), here in zip(periods, by_period):
            need = ask.gpus
            for it in here:
                take = min(need, int(it["gpus_offered"]))
                if take:
                    lines.append(_line(it, take, s, e, locations))
                    need -= take
                if need == 0:
                    break
            if need:
                short.append({"start": _iso(s), "available_gpus": ask.gpus - need})
        if short:
            avail = min(x["available_gpus"] for x in short)
            capped = f" at interruption risk <= {ask.max_interruption_risk:g}" if ask.max_interruption_risk is not None else ""
            raise CapacityShort(
                f"only {avail} of {ask.gpus} {ask.gpu_model} GPUs are offered as {ask.product}{capped} for the whole lease",
                {"requested_gpus": ask.gpus, "available_gpus": avail, "short_periods": short[:50]},
            )
    return _summary(sheet, ask, periods, lines, now)


def _summary(sheet: LoadedSheet, ask: QuoteAsk, periods: list[tuple[datetime, datetime]],
             lines: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Totals, the reference and saving, the lease's interruption risk and the sheet's validity."""
    total = round(sum(x["subtotal"] for x in lines), 2)
    gpu_hours = sum(x["gpus"] * x["hours"] for x in lines)
    exact = sum(x["gpus"] * x["hours"] * x["price_per_gpu_hour"] for x in lines)  # before cent rounding
    refs = [x["reference_subtotal"] for x in lines]
    ref_total = round(sum(refs), 2) if refs and all(r is not None for r in refs) else None
    saving = round(ref_total - total, 2) if ref_total is not None else None
    p_none = 1.0
    for x in lines:  # P(no line is reclaimed), lines taken as independent (an overstatement of the risk)
        p_none *= 1.0 - float(x["interruption_risk"] or 0.0)
    expired = sheet.expired(now)
    warnings = []
    if expired:
        warnings.append(f"sheet v{sheet.version} expired at {sheet.header['valid_until']}: these are the last "
                        "published prices and may no longer be offered")
    if ask.max_interruption_risk is not None and 1.0 - p_none > ask.max_interruption_risk:
        warnings.append(f"max_interruption_risk {ask.max_interruption_risk:g} caps each line; the lease as a whole "
                        f"({len(lines)} lines) has interruption risk {1.0 - p_none:.4f}")
    ident = f"{sheet.version}|{ask}".encode()
    return {
        "quote_id": hashlib.sha256(ident).hexdigest()[:16], "sheet_version": sheet.version,
        "valid_from": sheet.header["valid_from"], "valid_until": sheet.header["valid_until"],
        "sheet_status": "expired" if expired else "fresh", "currency": sheet.header["currency"],
        "gpu_model": ask.gpu_model, "product": ask.product, "gpus": ask.gpus,
        "start": _iso(periods[0][0]), "end": _iso(periods[-1][1]),
        "gpu_hours": gpu_hours, "total_price": total,
        "average_price_per_gpu_hour": round(exact / gpu_hours, 4) if gpu_hours else None,
        "reference_total_price": ref_total, "saving": saving,
        "saving_share": round(saving / ref_total, 4) if ref_total else None,
        "interruption_risk": round(1.0 - p_none, 4),
        "max_line_interruption_risk": max((float(x["interruption_risk"] or 0.0) for x in lines), default=0.0),
        "max_interruption_risk": ask.max_interruption_risk, "warnings": warnings,
        "lines": lines,
    }


def _single_pool(by_period: list[list[dict[str, Any]]], periods: list[tuple[datetime, datetime]],
                 ask: QuoteAsk, locations: Mapping[str, str]) -> list[dict[str, Any]]:
    """The cheapest pool that offers all `gpus` in every period."""
    best: tuple[float, str, list[dict[str, Any]]] | None = None
    most: dict[str, int] = {}
    pools = {it["pool"] for here in by_period for it in here}
    for pool in sorted(pools):
        lines = []
        for (s, e), here in zip(periods, by_period):
            it = next((x for x in here if x["pool"] == pool), None)
            have = int(it["gpus_offered"]) if it else 0
            most[pool] = min(most.get(pool, have), have)
            if have < ask.gpus:
                lines = None
                break
            lines.append(_line(it, ask.gpus, s, e, locations))
        if lines is not None:
            cost = sum(x["subtotal"] for x in lines)
            if best is None or cost < best[0]:
                best = (cost, pool, lines)
    if best is None:
        avail = max(most.values(), default=0)
        raise CapacityShort(
            f"no single pool offers {ask.gpus} {ask.gpu_model} GPUs as {ask.product} for the whole lease (most: {avail})",
            {"requested_gpus": ask.gpus, "available_gpus": avail, "by_pool": most},
        )
    return best[2]
