"""Request and response models: the OpenAPI contract, named after the price sheet contract (DESIGN.md).

Responses are built from pre-encoded bytes for speed, so these models document them (and the
schema-driven tests check the bytes against them) rather than validate them per request.
"""
from __future__ import annotations

from typing import Literal

from typing import Annotated, Any, ClassVar

import re

from pydantic import AfterValidator, AwareDatetime, WithJsonSchema, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

PRODUCT_PATTERN = r"^(spot|reserved_[0-9]{1,3}d)$"


def _iso_only(v: Any) -> Any:
    """Pydantic would read a number as Unix seconds; a price API should not guess what 0.5 means."""
    if isinstance(v, (int, float)) or (isinstance(v, str) and v.strip().replace(".", "", 1).lstrip("-").isdigit()):
        raise ValueError("use an ISO 8601 date-time with a time zone, e.g. 2026-11-24T00:00:00Z")
    return v


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
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

    gpu_model: list[Name] | None = Field(None, max_length=20, description="the fleet's GPU name or its catalogue class, e.g. V100, A100-80GB")
    region: list[Name] | None = Field(None, max_length=20)
    pool: list[Name] | None = Field(None, max_length=100)
    product: list[Product] | None = Field(None, max_length=10, description="spot, reserved_1d, reserved_7d, reserved_30d")
    start_from: Timestamp | None = Field(None, description="items starting at or after (ISO 8601 with a time zone)")
    start_to: Timestamp | None = Field(None, description="items starting before")
    limit: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE, description="items per page (default 100)")
    page_token: str | None = Field(None, max_length=512, description="next_page_token of the previous page")

    @model_validator(mode="after")
    def _range(self) -> "PricesQuery":
        if self.start_from and self.start_to and self.start_to <= self.start_from:
            raise ValueError("start_to must be after start_from")
        return self


class Reference(BaseModel):
    provider: str | None
    region: str | None
    sku: str | None
    product: str | None
    gpu_model: str | None = Field(None, description="the cloud GPU compared with (e.g. A100-80GB for an A800)")
    price: float | None = Field(description="the provider's price per GPU-hour")
    performance_factor: float | None = Field(1.0, description="this GPU's work per hour relative to the reference GPU")
    equivalent_price: float | None = Field(None, description="price x performance_factor: what the discount is measured against")
    as_of: str | None


class PriceItem(BaseModel):
    pool: str
    gpu_model: str = Field(description="the GPU as the fleet's telemetry names it")
    gpu_class: str | None = Field(None, description="its GPU catalogue class, e.g. A100-80GB")
    region: str
    product: str = Field(description="spot | reserved_1d | reserved_7d | reserved_30d")
    start: str = Field(description="lease start, UTC ISO 8601")
    end: str
    price_per_gpu_hour: float | None
    gpus_offered: int
    interruption_risk: float | None = Field(description="spot: forecast probability of a reclaim within the block")
    reference: Reference
    discount_vs_reference: float | None
    undercut_usd_per_gpu_hour: float | None
    floor: float | None
    guardrails: list[str]


class SheetHeader(BaseModel):
    version: int
    generated_at: str
    valid_from: str
    valid_until: str
    data_through: str
    mlflow_run_id: str | None
    forecast_id: str | None
    currency: str
    content_sha256: str


class PriceSheet(SheetHeader):
    items: list[PriceItem]


class SheetSummary(SheetHeader):
    items: int = Field(description="number of items")


class SheetsPage(BaseModel):
    sheets: list[SheetSummary]
    next_page_token: str | None


class PricesPage(BaseModel):
    sheet_version: int
    valid_from: str
    valid_until: str
    currency: str
    total: int = Field(description="items matching the filters, over all pages")
    items: list[PriceItem]
    next_page_token: str | None


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu_model: str = Field(min_length=1, max_length=64, examples=["V100"])
    product: str = Field(pattern=PRODUCT_PATTERN, examples=["spot", "reserved_7d"])
    start: Timestamp = Field(description="lease start with a time zone; must be an item start in the sheet")
    gpus: int = Field(ge=1, le=100_000)
    hours: int | None = Field(None, ge=1, le=24 * 366, description="spot only: lease length (a multiple of the block)")
    region: str | None = Field(None, max_length=64)
    pool: str | None = Field(None, max_length=128)
    single_pool: bool = Field(False, description="all GPUs from one pool (e.g. for one distributed job)")


class QuoteLine(BaseModel):
    pool: str
    region: str
    start: str
    end: str
    gpus: int
    hours: float
    price_per_gpu_hour: float
    subtotal: float
    interruption_risk: float | None


class Quote(BaseModel):
    quote_id: str
    sheet_version: int
    valid_until: str = Field(description="the quote's prices hold while this sheet is in force")
    currency: str
    gpu_model: str
    product: str
    gpus: int
    start: str
    end: str
    gpu_hours: float
    total_price: float
    average_price_per_gpu_hour: float | None
    lines: list[QuoteLine]


class ErrorBody(BaseModel):
    error: str = Field(description="a stable machine-readable code")
    message: str
    request_id: str | None = None
    detail: list[dict] | dict | None = None


class ForecastHour(BaseModel):
    ds: str
    mean: float
    q05: float
    q10: float
    q25: float
    q50: float
    q75: float
    q90: float
    q95: float
    gpus_total: float


class SpotRisk(BaseModel):
    start: str
    end: str
    interruption_risk: float | None
    price_per_gpu_hour: float | None
    gpus_offered: int


class InternalForecast(BaseModel):
    pool: str
    sheet_version: int
    forecast_id: str | None
    model: str | None
    origin: str | None
    hours: list[ForecastHour]
    spot: list[SpotRisk]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    sheet_version: int | None
    valid_until: str | None
    expired: bool | None
    reason: str | None
    last_reload_error: str | None

