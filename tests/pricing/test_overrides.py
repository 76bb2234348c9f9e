"""pricing.overrides: the pricing team's fixed prices, ranges and holds, within cost and ceiling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricing.overrides import OverrideError, apply_overrides, load_overrides

T0 = pd.Timestamp("2026-01-05 00:00", tz="UTC")


def items() -> pd.DataFrame:
    rows = []
    for pool in ("a", "b"):
        for k, prod in enumerate(("spot", "spot", "reserved_1d")):
            rows.append(dict(pool=pool, product=prod, start=T0 + pd.Timedelta(hours=6 * k), price_per_gpu_hour=2.0 + k,
                             floor=1.0, ceiling=4.0, reference_price=5.0, offered=True, guardrails=[], gpus_offered=4,
                             withdraw_reason="", base_price=2.0 + k, last_price=np.nan))
    return pd.DataFrame(rows)


def write(tmp_path, text: str):
    p = tmp_path / "overrides.toml"
    p.write_text(text)
    return p


def test_fixed_and_range_within_floor_and_ceiling(tmp_path):
    ov = load_overrides(write(tmp_path, """
[[override]]
pool = "a"
product = "spot"
fixed = 9.0
reason = "launch promo ends"
[[override]]
pool = "*"
product = "reserved_1d"
max = 3.5
reason = "match competitor"
"""))
    out, log = apply_overrides(items(), ov, None, T0)
    a_spot = out[(out["pool"] == "a") & (out["product"] == "spot")]
    assert (a_spot["price_per_gpu_hour"] == 4.0).all()  # fixed 9.0, but never above the ceiling
    assert all("override_clipped" in g and "override:fixed:launch promo ends" in g for g in a_spot["guardrails"])
    res = out[out["product"] == "reserved_1d"]
    assert (res["price_per_gpu_hour"] == 3.5).all()
    assert out.loc[(out["pool"] == "b") & (out["product"] == "spot"), "price_per_gpu_hour"].tolist() == [2.0, 3.0]
    assert np.allclose(out["discount_vs_reference"], 1 - out["price_per_gpu_hour"] / 5.0)
    assert log["items_matched"].tolist() == [2, 2] and log["items_clipped"].tolist() == [2, 0]


def test_hold_keeps_the_last_sheet_items(tmp_path):
    ov = load_overrides(write(tmp_path, '[[override]]\npool = "b"\nproduct = "*"\nhold = true\nreason = "audit"\n'))
    last = items()
    last["price_per_gpu_hour"] = 1.5
    last["gpus_offered"] = 2
    out, log = apply_overrides(items(), ov, last, T0 + pd.Timedelta(hours=1))
    b = out[out["pool"] == "b"]
    assert len(b) == 2 and (b["price_per_gpu_hour"] == 1.5).all() and (b["gpus_offered"] == 2).all()  # started item dropped
    assert all(g[-1] == "override:hold:audit" for g in b["guardrails"])
    assert len(out[out["pool"] == "a"]) == 3
    out, _ = apply_overrides(items(), ov, None, T0)
    assert (out["pool"] == "b").sum() == 0  # nothing to hold on to: not offered rather than re-priced


@pytest.mark.parametrize("text, needle", [
    ('[[override]]\npool = "a"\nproduct = "spot"\nfixed = 1\n', "`reason` is required"),
    ('[[override]]\npool = "a"\nproduct = "spot"\nreason = "x"\n', "exactly one of"),
    ('[[override]]\npool = "a"\nproduct = "spot"\nreason = "x"\nfixed = 1\nhold = true\n', "exactly one of"),
    ('[[override]]\npool = "a"\nproduct = "spot"\nreason = "x"\nmin = 3\nmax = 2\n', "above max"),
    ('[[override]]\npool = "a"\nproduct = "spot"\nreason = "x"\nfixed = -1\n', "positive number"),
    ('[[override]]\npool = "a"\nproduct = "spot"\nreason = "x"\nprice = 1\n', "unknown keys"),
    ('[override]\npool = "a"\n', "must be \\[\\[override\\]\\]"),
    ("fixed = ", "not valid TOML"),
])
def test_bad_files_say_what_is_wrong(tmp_path, text, needle):
    with pytest.raises(OverrideError, match=needle):
        load_overrides(write(tmp_path, text))


def test_missing_file_is_no_overrides(tmp_path):
    assert load_overrides(tmp_path / "none.toml") == [] and load_overrides(None) == []
