"""Request and response models: the OpenAPI contract, named after the price sheet contract (DESIGN.md).

Responses are built from pre-encoded bytes for speed, so these models document them (and the
schema-driven tests check the bytes against them) rather than validate them per request. Every
field has a description, an example and, for numbers, its unit (`x-unit`). Customer models
forbid extra fields, so a reply with an internal field fails the schema checks; the Internal*
models are what internal keys get (the customer fields plus the internal ones).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool,
                      StrictInt, StrictStr, StringConstraints, WithJsonSchema, model_validator)

PRODUCT_PATTERN = r"^(spot|reserved_[0-9]{1,3}d)$"
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(3000, 1, 1, tzinfo=timezone.utc)
TS = "2020-05-19T18:00:00Z"


def F(description: str, example: Any, unit: str | None = None, **kw: Any) -> Any:
    """A documented field: description, one example, and the unit of a number (required unless `default=`)."""
    extra = {"x-unit": unit} if unit else None
    return Field(kw.pop("default", ...), description=description, examples=[example], json_schema_extra=extra, **kw)


def O(description: str, example: Any, unit: str | None = None, **kw: Any) -> Any:
    """An optional documented field (default None)."""
    return F(description, example, unit, default=None, **kw)


def _iso_only(v: Any) -> Any:
    """Pydantic would read a number as Unix seconds; a price API should not guess what 0.5 means."""
    if isinstance(v, (int, float)) or (isinstance(v, str) and v.strip().replace(".", "", 1).lstrip("-").isdigit()):
        raise ValueError("use an ISO 8601 date-time with a time zone, e.g. 2026-11-24T00:00:00Z")
    return v


def _in_range(v: datetime) -> datetime:
    """Far dates overflow on conversion to UTC (0001-01-01T00:00+14:00); refuse them as input errors."""
    try:
        utc = v.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("date-time out of range: use one between 1970-01-01T00:00:00Z and 2999-12-31T23:59:59Z")
    return utc


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_in_range)]


def _digits(v: Any) -> Any:
    """`+1`, ` 1`, `1.0` and `1_0` (read as 10 by Python) are not numbers a client meant."""
    if isinstance(v, bool) or (isinstance(v, str) and not re.fullmatch(r"0|[1-9][0-9]{0,8}", v)):
        raise ValueError("use a whole number written in digits only, without leading zeros, e.g. 20")
    return v


QueryInt = Annotated[int, BeforeValidator(_digits)]
MAX_PAGE_SIZE = 1000
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def _product(v: str) -> str:
    if not re.fullmatch(PRODUCT_PATTERN, v):
        raise ValueError(f"unknown product {v[:40]!r}: use spot or reserved_<N>d (e.g. reserved_7d)")
    return v


Product = Annotated[str, AfterValidator(_product), WithJsonSchema({"type": "string", "pattern": PRODUCT_PATTERN})]


class PricesQuery(BaseModel):
    """Filters of GET /v1/prices; list filters may repeat (`?pool=a&pool=b`) or be comma-separated."""

    model_config = ConfigDict(extra="forbid")
    LIST_FIELDS: ClassVar[frozenset[str]] = frozenset({"gpu_model", "region", "pool", "product"})
    FIELDS: ClassVar[frozenset[str]] = frozenset({"gpu_model", "region", "pool", "product", "start_from", "start_to",
                                                  "limit", "page_token"})

    gpu_model: list[Name] | None = O("GPU model: the fleet's name or its catalogue class", ["V100"], max_length=20)
    region: list[Name] | None = O("region code (see `location` in items for where it is)", ["dc1"], max_length=20)
    pool: list[Name] | None = O("capacity pool", ["vc3sl"], max_length=100)
    product: list[Product] | None = O("spot, reserved_1d, reserved_7d or reserved_30d", ["spot"], max_length=10)
    start_from: Timestamp | None = O("items starting at or after this time (ISO 8601 with a time zone)", TS)
    start_to: Timestamp | None = O("items starting before this time (ISO 8601 with a time zone)", "2020-05-20T18:00:00Z")
    limit: QueryInt | None = O("items per page (default 100)", 50, "items", ge=1, le=MAX_PAGE_SIZE)
    page_token: str | None = O("`next_page_token` of the previous page", "eyJ2IjoxLCJvIjo1MCwiZiI6ImFiYyJ9",
                               max_length=512)

    @model_validator(mode="after")
    def _range(self) -> "PricesQuery":
        if self.start_from and self.start_to and self.start_to <= self.start_from:
            raise ValueError("start_to must be after start_from")
        return self


class Reference(BaseModel):
    """The public cloud price the item is compared with."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = F("cloud provider", "aws")
    region: str | None = F("the provider's region", "us-east-1")
    sku: str | None = F("the provider's instance type", "p3.2xlarge")
    product: str | None = F("the provider's product compared with (spot, on_demand, reserved_1y, ...)", "spot")
    gpu_model: str | None = F("the cloud GPU compared with (e.g. A100-80GB for an A800)", "V100")
    price: float | None = F("the provider's list price", 0.316, "USD per GPU-hour")
    performance_factor: float | None = F("this GPU's work per hour relative to the reference GPU (1 = same GPU)", 1.0,
                                         "ratio")
    equivalent_price: float | None = F("price x performance_factor: what the saving is measured against", 0.316,
                                       "USD per GPU-hour")
    as_of: str | None = F("date of the provider's price (YYYY-MM-DD)", "2025-11-30")


class PriceItem(BaseModel):
    """One offer: GPUs of a model in a pool, for a product and a time window, at a price."""

    model_config = ConfigDict(extra="forbid")

    pool: str = F("capacity pool the GPUs come from (name it in a quote to stay in one pool)", "vc3sl")
    gpu_model: str = F("the GPU as the fleet names it", "V100")
    gpu_class: str | None = F("its GPU catalogue class, e.g. A100-80GB", "V100")
    region: str = F("region code", "dc1")
    location: str = F("where the region is, in words; `unknown` when the operator has not said", "unknown")
    product: str = F("spot (reclaimable block) or reserved_<N>d (guaranteed for N days)", "spot")
    term: str = F("the product in words", "spot, 6-hour block, may be reclaimed")
    start: str = F("lease window start (UTC, ISO 8601)", TS)
    end: str = F("lease window end, exclusive (UTC, ISO 8601)", "2020-05-20T00:00:00Z")
    hours: int = F("length of the window", 6, "hours")
    price_per_gpu_hour: float | None = F("price of one GPU for one hour", 0.2844, "USD per GPU-hour")
    price_unit: str = F("the unit of price_per_gpu_hour", "USD per GPU-hour")
    gpus_offered: int = F("GPUs on offer in this window", 3, "GPUs")
    interruption_risk: float | None = F(
        "spot: forecast probability that some GPUs of this offer are reclaimed before the block ends; "
        "reserved: 0 (guaranteed). See the sheet's interruption_risk_meaning", 0.1615, "probability (0-1)")
    reference: Reference = Field(description="the public cloud offer this item is compared with")
    saving_per_gpu_hour: float | None = F("reference equivalent price minus our price", 0.0316, "USD per GPU-hour")
    discount_vs_reference: float | None = F("saving as a share of the reference equivalent price", 0.1,
                                            "fraction (0-1)")


class SheetHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = F("sheet version; a version never changes once published", 1, "version number")
    generated_at: str = F("when the sheet was priced (UTC)", "2026-11-30T09:07:46Z")
    valid_from: str = F("prices hold from (UTC)", "2020-05-19T16:00:00Z")
    valid_until: str = F("prices hold until (UTC); after it the sheet is served flagged as expired",
                         "2020-05-20T16:00:00Z")
    data_through: str = F("the newest fleet data the forecast saw (UTC)", "2020-05-19T15:00:00Z")
    currency: str = F("currency of every price (ISO 4217)", "USD")


class PriceSheet(SheetHeader):
    """The current (or one published) price sheet."""

    interruption_risk_meaning: str = F("what interruption_risk means for spot and reserved items",
                                       "Spot: the forecast probability that ...")
    items: list[PriceItem] = Field(description="every offer, by pool, product and start")


class SheetSummary(SheetHeader):
    items: int = F("number of items", 139, "items")


class SheetsPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sheets: list[SheetSummary] = Field(description="published sheets, newest first")
    next_page_token: str | None = F("pass as page_token for the next page; null on the last page", None)


class PricesPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sheet_version: int = F("the sheet these items come from (a page token keeps it across a new sheet)", 1,
                           "version number")
    valid_from: str = F("the sheet's prices hold from (UTC)", "2020-05-19T16:00:00Z")
    valid_until: str = F("the sheet's prices hold until (UTC)", "2020-05-20T16:00:00Z")
    currency: str = F("currency of every price (ISO 4217)", "USD")
    total: int = F("items matching the filters, over all pages", 133, "items")
    items: list[PriceItem] = Field(description="this page's items")
    next_page_token: str | None = F("pass as page_token for the next page; null on the last page", None)


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu_model: StrictStr = F("GPU model (the fleet's name or its catalogue class)", "V100", min_length=1, max_length=64)
    product: StrictStr = F("spot or reserved_<N>d", "spot", pattern=PRODUCT_PATTERN)
    start: Timestamp = F("lease start with a time zone: one of the item starts of the product in the sheet "
                         "(spot blocks start every block length; a 422 lists the valid starts)", TS)
    gpus: StrictInt = F("GPUs wanted in every hour of the lease", 8, "GPUs", ge=1, le=100_000)
    hours: StrictInt | None = O("spot only: lease length, a whole number of blocks (default one block)", 12, "hours",
                                ge=1, le=24 * 366)
    region: StrictStr | None = O("only this region", None, max_length=64)
    pool: StrictStr | None = O("only this pool", None, max_length=128)
    single_pool: StrictBool = F("all GPUs from one pool (e.g. for one distributed job)", False, default=False)
    max_interruption_risk: float | None = O("leave out spot offers (each block of each pool) whose interruption risk "
                                            "is above this; it caps every line, not the whole lease, whose risk "
                                            "the reply states as interruption_risk", 0.3,
                                            "probability (0-1)", ge=0, le=1, strict=True)


class QuoteReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = F("cloud provider", "aws")
    sku: str | None = F("the provider's instance type", "p3.2xlarge")
    product: str | None = F("the provider's product compared with", "spot")


class QuoteLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: str = F("pool the GPUs come from", "vc3sl")
    region: str = F("region code", "dc1")
    location: str = F("where the region is; `unknown` when the operator has not said", "unknown")
    start: str = F("block or term start (UTC)", TS)
    end: str = F("block or term end (UTC)", "2020-05-20T00:00:00Z")
    gpus: int = F("GPUs drawn from this offer", 3, "GPUs")
    hours: float = F("hours of this line", 6, "hours")
    price_per_gpu_hour: float = F("price of one GPU for one hour", 0.2844, "USD per GPU-hour")
    subtotal: float = F("gpus x hours x price", 5.12, "USD")
    interruption_risk: float | None = F("the offer's interruption risk in this block", 0.1615, "probability (0-1)")
    reference_price_per_gpu_hour: float | None = F("the reference's equivalent price", 0.316, "USD per GPU-hour")
    reference_subtotal: float | None = F("gpus x hours x reference price", 5.69, "USD")
    reference: QuoteReference = Field(description="the public cloud offer the line is compared with")


class Quote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quote_id: str = F("stable id of this quote on this sheet", "3f1c2a9b7d6e5f40")
    sheet_version: int = F("the sheet the quote is priced from", 1, "version number")
    valid_from: str = F("the sheet's prices hold from (UTC)", "2020-05-19T16:00:00Z")
    valid_until: str = F("the quote's prices hold while this sheet is in force, until (UTC)", "2020-05-20T16:00:00Z")
    sheet_status: Literal["fresh", "expired"] = F("expired: the sheet's valid_until has passed; the prices are the "
                                                  "last published and may no longer be offered", "fresh")
    currency: str = F("currency of every amount (ISO 4217)", "USD")
    gpu_model: str = F("GPU model asked for", "V100")
    product: str = F("product asked for", "spot")
    gpus: int = F("GPUs in every hour of the lease", 8, "GPUs")
    start: str = F("lease start (UTC)", TS)
    end: str = F("lease end (UTC)", "2020-05-20T06:00:00Z")
    gpu_hours: float = F("gpus x hours", 96, "GPU-hours")
    total_price: float = F("what the lease costs", 25.41, "USD")
    average_price_per_gpu_hour: float | None = F("total_price / gpu_hours", 0.2647, "USD per GPU-hour")
    reference_total_price: float | None = F("what the same GPU-hours cost at the reference prices", 30.34, "USD")
    saving: float | None = F("reference_total_price - total_price", 4.93, "USD")
    saving_share: float | None = F("saving / reference_total_price", 0.1625, "fraction (0-1)")
    interruption_risk: float = F(
        "probability that any part of the lease is reclaimed: 1 - product of (1 - risk) over the lines, as if the "
        "lines were independent; blocks of a pool tend to be reclaimed together, so this overstates rather than "
        "understates. 0 for reserved", 0.41, "probability (0-1)")
    max_line_interruption_risk: float = F("the highest interruption risk of any line", 0.18, "probability (0-1)")
    max_interruption_risk: float | None = O("the cap asked for, if any (it applies to each line)", 0.3,
                                            "probability (0-1)")
    warnings: list[str] = F("what to know before booking (an expired sheet; a lease riskier as a whole than "
                            "max_interruption_risk)", [])
    lines: list[QuoteLine] = Field(description="the offers drawn on, cheapest first in every period")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = F("a stable machine-readable code", "invalid_request")
    message: str = F("what is wrong and how to fix it", "gpus: Input should be greater than or equal to 1")
    request_id: str | None = O("quote it to the operators", "5f3a9c1e00000042")
    detail: list[dict] | dict | None = O("structured detail (fields, valid starts, available GPUs)", None)


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"] = F("the process answers", "ok")


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded", "unready"] = F(
        "ok; degraded: serving, but something needs an operator (see reasons); unready: no sheet or it expired", "ok")
    ready: bool = F("a sheet is served and has not expired", True)
    sheet_version: int | None = F("the sheet served", 1, "version number")
    valid_until: str | None = F("its valid_until (UTC)", "2020-05-20T16:00:00Z")
    expired: bool | None = F("valid_until has passed", False)
    reason: str | None = F("the first of reasons", None)
    reasons: list[str] = F("everything that makes the status other than ok (in general terms; an internal key "
                           "gets the file names and errors)", [])
    last_reload_error: str | None = F("the last sheet reload problem, if the last reload failed", None)


# ---- internal keys ---------------------------------------------------------------------------------
class InternalPriceItem(PriceItem):
    """A customer item plus what only we see; any other field of the published file is passed through."""

    model_config = ConfigDict(extra="allow")

    floor: float | None = F("our cost floor (never sold under)", 0.0968, "USD per GPU-hour")
    guardrails: list[str] = F("guardrails and overrides that set the price (max_change, floor, ceiling, "
                              "override:<action>:<reason>, override_clipped, hold_last:<why>)", ["max_change"])
    undercut_usd_per_gpu_hour: float | None = F("as published: reference equivalent price - price", 0.0316,
                                                "USD per GPU-hour")


class InternalHeader(BaseModel):
    mlflow_run_id: str | None = F("the MLflow run that priced the sheet", "206956cc61ff4c88ba55954a981fc6fe")
    forecast_id: str | None = F("the forecast the sheet was priced from", "idlecap-forecaster:v1:20200519T1600Z")
    content_sha256: str = F("hash of the published file's header window and items",
                            "c6f14b8226671eb7204981ead0cb7ac4117313e4db89ebf1e552fe9b566fdcf7")


class InternalPriceSheet(PriceSheet, InternalHeader):
    model_config = ConfigDict(extra="forbid")

    items: list[InternalPriceItem] = Field(description="every offer, with floors and guardrails")


class InternalSheetSummary(SheetSummary, InternalHeader):
    model_config = ConfigDict(extra="forbid")


class InternalSheetsPage(SheetsPage):
    sheets: list[InternalSheetSummary] = Field(description="published sheets, newest first")


class InternalPricesPage(PricesPage):
    items: list[InternalPriceItem] = Field(description="this page's items")


INTERNAL_TWINS = {"PriceSheet": InternalPriceSheet, "SheetsPage": InternalSheetsPage, "PricesPage": InternalPricesPage}


class ForecastHour(BaseModel):
    ds: str = F("hour (UTC)", TS)
    mean: float = F("forecast idle GPUs", 5.2, "GPUs")
    q05: float = F("5% quantile", 2.0, "GPUs")
    q10: float = F("10% quantile", 2.5, "GPUs")
    q25: float = F("25% quantile", 4.0, "GPUs")
    q50: float = F("median", 5.0, "GPUs")
    q75: float = F("75% quantile", 6.0, "GPUs")
    q90: float = F("90% quantile", 7.5, "GPUs")
    q95: float = F("95% quantile", 8.0, "GPUs")
    gpus_total: float = F("pool capacity", 16, "GPUs")


class SpotRisk(BaseModel):
    start: str = F("block start (UTC)", TS)
    end: str = F("block end (UTC)", "2020-05-20T00:00:00Z")
    interruption_risk: float | None = F("published interruption risk", 0.16, "probability (0-1)")
    price_per_gpu_hour: float | None = F("published price", 0.2844, "USD per GPU-hour")
    gpus_offered: int = F("GPUs offered", 3, "GPUs")


class InternalForecast(BaseModel):
    pool: str = F("pool", "vc3sl")
    sheet_version: int = F("sheet the forecast priced", 1, "version number")
    forecast_id: str | None = F("forecast id", "idlecap-forecaster:v1:20200519T1600Z")
    model: str | None = F("forecasting model", "lgbm")
    origin: str | None = F("forecast origin (UTC)", "2020-05-19T16:00:00Z")
    hours: list[ForecastHour] = Field(description="hourly idle-GPU forecast")
    spot: list[SpotRisk] = Field(description="the pool's published spot blocks")
