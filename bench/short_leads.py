"""Short leads: every shipped model vs persistence over the first hours, with and without the anchor.

Rolling-origin backtest (models.backtest.cross_validation) on the bundled Helios sample: 12
origins 13 hours apart (so every clock hour is an origin somewhere), 24 h ahead. Reported: MAE
at leads 1, 2, 3, over leads 1-3 and over 1-24, as a ratio to persistence (`naive`, the last
observed hour) on the same rows. `raw` is the model alone, `anchored` the shipped one (leads
1-3 at the last observed hour, then the gap fading by `anchor_decay` an hour). The decay is
chosen on the earlier 6 origins (best 1-24 h MAE over the models: leads 1-3 are persistence
whatever the decay) and scored on the later 6.

Run: `.venv/bin/python bench/short_leads.py [--models snaive_24,mstl,lgbm,ensemble] [--windows 12]`
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DECAYS = (0.0, 0.7, 0.85, 0.95)


def _last_observed(df: pd.DataFrame, cutoffs) -> pd.DataFrame:
    """Per pool and cutoff, the last observed hour's value when it is within 3 hours of the cutoff."""
    out = []
    for c in cutoffs:
        h = df[(df["ds"] < c) & (df["ds"] >= c - pd.Timedelta(hours=3)) & df["y"].notna()]
        t = h.sort_values("ds").groupby("unique_id")["y"].last().rename("y_last").reset_index()
        out.append(t.assign(cutoff=c))
    return pd.concat(out, ignore_index=True)


def main() -> None:
    from models import catalog
    from models.anchor import weights
    from models.backtest import cross_validation
    from risk_model import helios

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="snaive_24,mstl,lgbm,ensemble")
    ap.add_argument("--windows", type=int, default=12)
    a = ap.parse_args()
    df, cal, _ = helios()
    names = a.models.split(",")
    rows = []
    t0 = time.perf_counter()
    base = cross_validation([catalog.build("naive", 24)], df, cal, h=24, n_windows=a.windows, step=13)
    base = base[["unique_id", "ds", "cutoff", "step", "y", "mean"]].rename(columns={"mean": "naive"})
    # the models once, unanchored; the anchor is a shift of their path, applied here per decay
    # exactly as models.anchor.ShortLeadAnchor does (same last observation, same fade)
    raw = cross_validation(catalog.build_all(names, 24, {"n_jobs": 2}, 1, anchor_decay=0.0), df, cal, h=24,
                           n_windows=a.windows, step=13)
    raw = raw.merge(base, on=["unique_id", "ds", "cutoff", "step", "y"])
    last = _last_observed(df, raw["cutoff"].unique())
    raw = raw.merge(last, on=["unique_id", "cutoff"], how="left")
    gap = (raw["y_last"] - raw["mean"]).fillna(0.0)
    for d in DECAYS:
        w = weights(raw["step"].to_numpy(), d, 3) if d > 0 else 0.0
        shifted = np.clip(raw["mean"] + gap * w, 0, raw["gpus_total"])
        rows.append(raw.assign(mean=shifted, decay=d))
    cv = pd.concat(rows, ignore_index=True)
    cv["err"] = (cv["mean"] - cv["y"]).abs()
    cv["err_naive"] = (cv["naive"] - cv["y"]).abs()
    cutoffs = sorted(cv["cutoff"].unique())
    early = set(cutoffs[: len(cutoffs) // 2])
    cv["half"] = np.where(cv["cutoff"].isin(early), "early", "later")
    pick = cv[(cv["half"] == "early") & (cv["decay"] > 0)].groupby("decay")[["err"]].mean()["err"]
    chosen = float(pick.idxmin())
    print(f"{len(cutoffs)} origins, {time.perf_counter() - t0:.0f} s; decay by early-origin 1-24 h MAE: "
          + ", ".join(f"{d:g}: {v:.3f}" for d, v in pick.items()) + f" -> chosen {chosen:g}")
    for half in ("early", "later"):
        part = cv[cv["half"] == half]
        out = []
        for (m, d), g in part[part["decay"].isin([0.0, chosen])].groupby(["model", "decay"]):
            r = {"model": m, "variant": "raw" if d == 0 else f"anchored {d:g}"}
            for s in (1, 2, 3):
                gs = g[g["step"] == s]
                r[f"lead {s}"] = gs["err"].mean() / gs["err_naive"].mean()
            g3 = g[g["step"] <= 3]
            r["leads 1-3"] = g3["err"].mean() / g3["err_naive"].mean()
            r["leads 1-24"] = g["err"].mean() / g["err_naive"].mean()
            r["MAE 1-3"] = g3["err"].mean()
            r["naive MAE 1-3"] = g3["err_naive"].mean()
            out.append(r)
        print(f"\n{half} origins: MAE / persistence MAE (below 1 = better than persistence)")
        print(pd.DataFrame(out).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
