"""Real example replies for the OpenAPI documentation: taken from the sheet `idlecap demo` publishes
(bundled Helios sample, May 2020; tests/api/data/demo-sheets). tests/api/test_docs.py checks each
against its model, so an example cannot drift from the contract.
"""
from __future__ import annotations

from typing import Any

# the public price every V100 spot block of the demo sheet undercuts
V100_SPOT_REFERENCE: dict[str, Any] = {
    "provider": "aws", "region": "us-east-1", "sku": "p3.2xlarge", "product": "spot", "gpu_model": "V100",
    "price": 0.316, "performance_factor": 1.0, "equivalent_price": 0.316, "as_of": "2025-11-30",
}

PRICE_SHEET: dict[str, Any] = {
    "version": 1,
    "generated_at": "2026-11-30T09:07:46Z",
    "valid_from": "2020-05-19T16:00:00Z",
    "valid_until": "2020-05-20T16:00:00Z",
    "data_through": "2020-05-19T15:00:00Z",
    "currency": "USD",
    "interruption_risk_meaning": "Spot: the forecast probability that some of the GPUs offered in the block are reclaimed for internal training before the block ends (0 = never seen, 1 = certain); a reclaimed lease stops early and is billed only for the hours used. Reserved: capacity is guaranteed for the whole term (0).",
    "items": [
        {
            "pool": "vc3sl",
            "gpu_model": "V100",
            "gpu_class": "V100",
            "region": "dc1",
            "location": "unknown",
            "product": "spot",
            "term": "spot, 6-hour block, may be reclaimed",
            "start": "2020-05-19T18:00:00Z",
            "end": "2020-05-20T00:00:00Z",
            "hours": 6,
            "price_per_gpu_hour": 0.2844,
            "price_unit": "USD per GPU-hour",
            "gpus_offered": 3,
            "interruption_risk": 0.1615,
            "reference": V100_SPOT_REFERENCE,
            "saving_per_gpu_hour": 0.0316,
            "discount_vs_reference": 0.1
        },
        {
            "pool": "vc3sl",
            "gpu_model": "V100",
            "gpu_class": "V100",
            "region": "dc1",
            "location": "unknown",
            "product": "spot",
            "term": "spot, 6-hour block, may be reclaimed",
            "start": "2020-05-20T00:00:00Z",
            "end": "2020-05-20T06:00:00Z",
            "hours": 6,
            "price_per_gpu_hour": 0.2844,
            "price_unit": "USD per GPU-hour",
            "gpus_offered": 2,
            "interruption_risk": 0.1634,
            "reference": V100_SPOT_REFERENCE,
            "saving_per_gpu_hour": 0.0316,
            "discount_vs_reference": 0.1
        }
    ]
}

# what an internal key sees of the same sheet: the customer fields, then the internal ones
INTERNAL_PRICE_SHEET: dict[str, Any] = {
    **{k: v for k, v in PRICE_SHEET.items() if k != "items"},
    "mlflow_run_id": "206956cc61ff4c88ba55954a981fc6fe",
    "forecast_id": "idlecap-forecaster:v1:20200519T1600Z",
    "content_sha256": "c6f14b8226671eb7204981ead0cb7ac4117313e4db89ebf1e552fe9b566fdcf7",
    "items": [{**PRICE_SHEET["items"][0], "undercut_usd_per_gpu_hour": 0.0316, "floor": 0.0968, "guardrails": []}],
}

PRICES_PAGE: dict[str, Any] = {
    "sheet_version": 1,
    "valid_from": "2020-05-19T16:00:00Z",
    "valid_until": "2020-05-20T16:00:00Z",
    "currency": "USD",
    "total": 133,
    "items": [PRICE_SHEET["items"][0]],  # the sheet's first item, as the filtered page returns it
    "next_page_token": "eyJ2IjoxLCJvIjoxLCJmIjoiNGI3ZjJhMGM5ZDFlIn0"
}

SHEETS_PAGE: dict[str, Any] = {
    "sheets": [
        {
            "version": 1,
            "generated_at": "2026-11-30T09:07:46Z",
            "valid_from": "2020-05-19T16:00:00Z",
            "valid_until": "2020-05-20T16:00:00Z",
            "data_through": "2020-05-19T15:00:00Z",
            "currency": "USD",
            "items": 139
        }
    ],
    "next_page_token": None
}

QUOTE: dict[str, Any] = {
    "quote_id": "6cf491a80713f293",
    "sheet_version": 1,
    "valid_from": "2020-05-19T16:00:00Z",
    "valid_until": "2020-05-20T16:00:00Z",
    "sheet_status": "fresh",
    "currency": "USD",
    "gpu_model": "V100",
    "product": "spot",
    "gpus": 8,
    "start": "2020-05-19T18:00:00Z",
    "end": "2020-05-20T06:00:00Z",
    "gpu_hours": 96.0,
    "total_price": 17.07,
    "average_price_per_gpu_hour": 0.1778,
    "reference_total_price": 30.34,
    "saving": 13.27,
    "saving_share": 0.4374,
    "interruption_risk": 0.207,
    "max_line_interruption_risk": 0.1326,
    "max_interruption_risk": None,
    "warnings": [],
    "lines": [
        {
            "pool": "vcJkd",
            "region": "dc1",
            "location": "unknown",
            "start": "2020-05-19T18:00:00Z",
            "end": "2020-05-20T00:00:00Z",
            "gpus": 8,
            "hours": 6.0,
            "price_per_gpu_hour": 0.1522,
            "subtotal": 7.31,
            "interruption_risk": 0.0858,
            "reference_price_per_gpu_hour": 0.316,
            "reference_subtotal": 15.17,
            "reference": {
                "provider": "aws",
                "sku": "p3.2xlarge",
                "product": "spot"
            }
        },
        {
            "pool": "vcdI0",
            "region": "dc1",
            "location": "unknown",
            "start": "2020-05-20T00:00:00Z",
            "end": "2020-05-20T06:00:00Z",
            "gpus": 8,
            "hours": 6.0,
            "price_per_gpu_hour": 0.2034,
            "subtotal": 9.76,
            "interruption_risk": 0.1326,
            "reference_price_per_gpu_hour": 0.316,
            "reference_subtotal": 15.17,
            "reference": {
                "provider": "aws",
                "sku": "p3.2xlarge",
                "product": "spot"
            }
        }
    ]
}

QUOTE_REQUEST: dict[str, Any] = {
    "gpu_model": "V100",
    "product": "spot",
    "start": "2020-05-19T18:00:00Z",
    "gpus": 8,
    "hours": 12,
    "max_interruption_risk": 0.3
}

INVALID_START: dict[str, Any] = {
    "error": "invalid_start",
    "message": "start 2020-05-19T16:00:00Z is not a spot start in sheet v1: spot is sold in 6-hour blocks; valid starts: 2020-05-19T18:00Z, 2020-05-20T00:00Z, 2020-05-20T06:00Z, 2020-05-20T12:00Z, ... (28 in all, see detail.valid_starts)",
    "request_id": "5f3a9c1e00000042",
    "detail": {
        "valid_starts": [
            "2020-05-19T18:00:00Z",
            "2020-05-20T00:00:00Z",
            "2020-05-20T06:00:00Z"
        ],
        "valid_starts_total": 28,
        "block_hours": 6.0
    }
}

INSUFFICIENT: dict[str, Any] = {
    "error": "insufficient_capacity",
    "message": "only 46 of 80 V100 GPUs are offered as spot for the whole lease",
    "request_id": "5f3a9c1e00000043",
    "detail": {
        "requested_gpus": 80,
        "available_gpus": 46,
        "short_periods": [
            {
                "start": "2020-05-19T18:00:00Z",
                "available_gpus": 46
            }
        ]
    }
}

READY: dict[str, Any] = {
    "status": "degraded",
    "ready": True,
    "sheet_version": 1,
    "valid_until": "2026-12-01T16:00:00Z",
    "expired": False,
    "reason": "the API key file could not be read; the keys loaded before stay in use",
    "reasons": [
        "the API key file could not be read; the keys loaded before stay in use"
    ],
    "last_reload_error": None
}
