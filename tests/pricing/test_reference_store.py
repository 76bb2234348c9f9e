"""Versioned reference sets (pricing.reference_store) and `idlecap references` (pipelines.cli_references)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import pricing.reference_store as store_mod
from pipelines.cli_references import references_app
from pricing.reference import load_reference_rates
from pricing.reference_import import COLUMNS, file_sha256, read_azure_retail, read_ec2_dump, to_csv_text
from pricing.reference_store import (
    LOG_NAME,
    ReferenceStoreError,
    current_path,
    import_files,
    import_references,
    in_force_path,
    list_versions,
    merge_regions,
    provider_ages,
    version_path,
    versions,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EC2 = FIXTURES / "ec2_dump_2025-12-01.json"
PAGE1 = FIXTURES / "azure_retail_page1.json"
PAGE2 = FIXTURES / "azure_retail_page2.json"
SNAPSHOTS = FIXTURES / "azure_snapshots.csv"
NOW = datetime(2026, 9, 1, 2, 0, tzinfo=timezone.utc)

BASE_ROWS = [
    # provider, region, sku, product, gpu_model, variant, gpus, instance $, as_of
    ("aws", "us-east-1", "p5.48xlarge", "on_demand", "H100", "SXM5-80GB", 8, 98.32, "2025-01-01"),
    ("aws", "us-east-1", "g7e.2xlarge", "on_demand", "RTXPRO6000", "Blackwell-Server", 1, 3.36, "2025-01-01"),
    ("aws", "eu-west-1", "p5.48xlarge", "on_demand", "H100", "SXM5-80GB", 8, 60.0, "2025-01-01"),
    ("azure", "westeurope", "Standard_ND96isr_H100_v5", "on_demand", "H100", "SXM5-80GB", 8, 120.0, "2025-06-01"),
    ("azure", "northeurope", "Standard_NC4as_T4_v3", "on_demand", "T4", "", 1, 0.6, "2025-06-01"),
]


def base_frame() -> pd.DataFrame:
    rows = [
        dict(provider=p, region=r, region_kind="region", sku=s, product=pr, gpu_model=m, gpu_variant=v,
             gpus_per_instance=float(g), usd_per_instance_hour=price, usd_per_gpu_hour=round(price / g, 6),
             as_of=pd.Timestamp(d), dataset=f"{p}_base", basis="pay_as_you_go", source="base-src")
        for p, r, s, pr, m, v, g, price, d in BASE_ROWS
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    path = tmp_path / "shipped.csv"
    path.write_text(to_csv_text(base_frame()))
    return path


def pairs(rates: pd.DataFrame) -> set[tuple[str, str]]:
    return set(rates[["provider", "region"]].itertuples(index=False, name=None))


# --- versions ---------------------------------------------------------------------------------

def test_first_import_writes_version_1_and_a_log_record(tmp_path: Path, shipped: Path) -> None:
    store = tmp_path / "refs"
    new = read_ec2_dump(EC2).rates
    result = import_references(store, load_reference_rates(shipped), new, [EC2], NOW)
    assert result["status"] == "created" and result["version"] == 1
    assert current_path(store) == version_path(store, 1) == Path(result["path"])
    rates = load_reference_rates(current_path(store))  # a version passes the strict loader
    assert list(pd.read_csv(current_path(store), nrows=0).columns) == COLUMNS
    [record] = [json.loads(line) for line in (store / LOG_NAME).read_text().splitlines()]
    assert record["version"] == 1 and record["file"] == "reference-rates-000001.csv"
    assert record["imported_at"] == "2026-09-01T02:00:00+00:00"
    assert record["files"] == [{"path": str(EC2), "sha256": file_sha256(EC2)}]
    assert record["replaced"] == [["aws", "eu-north-1"], ["aws", "us-east-1"]]
    assert record["imported_rows"] == {"aws": {"on_demand": 4, "reserved_1y": 3, "reserved_3y": 3, "spot": 2}}
    assert record["rows"]["aws"]["on_demand"] == 5 and record["rows"]["azure"] == {"on_demand": 2}
    assert record["rows_total"] == len(rates) == 15
    assert record["newest_as_of"] == {"aws": "2025-12-01", "azure": "2025-06-01"}
    assert record["rows_removed"] == 2 and record["removed_newer_than_import"] == 0
    assert record["base_version"] is None


def test_import_replaces_only_the_provider_regions_it_brings(tmp_path: Path, shipped: Path) -> None:
    base = load_reference_rates(shipped)
    new = read_ec2_dump(EC2).rates  # aws us-east-1 and eu-north-1
    merged = merge_regions(base, new)
    assert pairs(merged) == pairs(base) | {("aws", "eu-north-1")}
    east = merged[(merged["provider"] == "aws") & (merged["region"] == "us-east-1")]
    assert set(east["sku"]) == {"p5.48xlarge", "g6f.large", "p4de.24xlarge"}  # g7e (not in the file) is gone
    assert east.loc[(east["sku"] == "p5.48xlarge") & (east["product"] == "on_demand"), "usd_per_instance_hour"].item() == 55.04
    others = merged[~((merged["provider"] == "aws") & merged["region"].isin(["us-east-1", "eu-north-1"]))]
    kept = base[~((base["provider"] == "aws") & (base["region"] == "us-east-1"))]
    assert to_csv_text(others) == to_csv_text(kept)  # eu-west-1 and Azure untouched


def test_refreshing_one_provider_keeps_the_other_and_versions_accumulate(tmp_path: Path, shipped: Path) -> None:
    store = tmp_path / "refs"
    first, _ = import_files(store, shipped, [EC2], now=NOW)
    second, report = import_files(store, shipped, [SNAPSHOTS], now=NOW)
    assert (first["version"], second["version"]) == (1, 2)
    assert second["base"] == str(version_path(store, 1)) and second["base_version"] == 1
    rates = load_reference_rates(current_path(store))
    assert set(rates.loc[rates["provider"] == "aws", "as_of"]) == {pd.Timestamp("2025-01-01"), pd.Timestamp("2025-12-01")}
    north = rates[(rates["provider"] == "azure") & (rates["region"] == "northeurope")]
    assert set(north["product"]) == {"on_demand", "spot"} and north["usd_per_instance_hour"].min() == 0.195941
    west = rates[(rates["provider"] == "azure") & (rates["region"] == "westeurope")]
    assert west["usd_per_instance_hour"].tolist() == [120.0]  # not in the snapshot: kept
    assert report.skipped["meter_withdrawn"] == 1
    table = list_versions(store)
    assert table["version"].tolist() == [1, 2] and table["in_force"].tolist() == [False, True]
    assert table["rows"].tolist() == [15, 16]
    assert table.loc[1, "files"] == "azure_snapshots.csv"


def test_same_content_again_creates_no_version(tmp_path: Path, shipped: Path) -> None:
    store = tmp_path / "refs"
    import_files(store, shipped, [EC2, PAGE1, PAGE2], now=NOW)
    before = sorted(p.name for p in store.iterdir()), (store / LOG_NAME).read_text()
    again, _ = import_files(store, shipped, [EC2, PAGE1, PAGE2], now=NOW)
    assert again["status"] == "unchanged" and again["version"] == 1
    assert (sorted(p.name for p in store.iterdir()), (store / LOG_NAME).read_text()) == before
    # the shipped content itself is "unchanged" too: nothing written, the shipped file stays in force
    fresh = tmp_path / "fresh"
    same, _ = import_files(fresh, shipped, [shipped], now=NOW)
    assert same["status"] == "unchanged" and same["version"] is None
    assert not fresh.exists() or not any(fresh.iterdir())
    assert in_force_path(fresh, shipped) == shipped


def test_an_older_file_over_newer_prices_is_flagged(tmp_path: Path, shipped: Path) -> None:
    store = tmp_path / "refs"
    import_files(store, shipped, [EC2], as_of="2026-03-01", now=NOW)
    older, _ = import_files(store, shipped, [EC2], now=NOW)  # same prices, dated 2025-12-01 from its name
    assert older["status"] == "created" and older["removed_newer_than_import"] == 12


def test_versions_are_immutable_and_complete(tmp_path: Path, shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "refs"
    import_files(store, shipped, [EC2], now=NOW)
    v1 = version_path(store, 1).read_bytes()
    # an existing version is never overwritten, even by a racing importer
    with pytest.raises(ReferenceStoreError, match="already exists"):
        store_mod._write_version(store, 1, to_csv_text(base_frame()))
    assert version_path(store, 1).read_bytes() == v1
    # a crash mid-write (here: the final strict check fails) leaves no version and no temp file
    def boom(path: Path) -> None:
        raise RuntimeError("disk gone")
    monkeypatch.setattr(store_mod, "load_reference_rates", boom)
    with pytest.raises(RuntimeError, match="disk gone"):
        import_references(store, load_reference_rates(shipped), read_azure_retail(SNAPSHOTS).rates, [SNAPSHOTS], NOW)
    assert [p.name for p in store.iterdir() if p.name != LOG_NAME] == ["reference-rates-000001.csv"]
    assert len((store / LOG_NAME).read_text().splitlines()) == 1
    # a temp file left by a killed import is not a version
    (store / ".reference-rates-000002.csv.tmp-999").write_text("partial")
    assert [v for v, _ in versions(store)] == [1] and current_path(store) == version_path(store, 1)


def test_list_versions_survives_a_torn_log_and_an_empty_store(tmp_path: Path, shipped: Path) -> None:
    assert list_versions(tmp_path / "none").empty and current_path(tmp_path / "none") is None
    store = tmp_path / "refs"
    import_files(store, shipped, [EC2], now=NOW)
    with (store / LOG_NAME).open("a") as fh:
        fh.write('{"version": 2, "fi')  # killed mid-append
    table = list_versions(store)
    assert table["version"].tolist() == [1] and table.loc[0, "rows"] == 15


def test_provider_ages() -> None:
    rates = base_frame()
    ages = provider_ages(rates, pd.Timestamp("2025-07-01T12:00", tz="UTC"))
    assert ages["provider"].tolist() == ["aws", "azure"]
    assert ages["newest_as_of"].tolist() == [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-06-01")]
    assert ages["age_days"].tolist() == [181.5, 30.5]


def test_bad_file_leaves_the_store_untouched(tmp_path: Path, shipped: Path) -> None:
    from pricing.reference_import import ReferenceImportError

    store = tmp_path / "refs"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReferenceImportError, match=r"bad\.json: not JSON"):
        import_files(store, shipped, [EC2, bad], now=NOW)
    assert not store.exists()


# --- CLI --------------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path: Path, shipped: Path):
    config = tmp_path / "idlecap.toml"
    config.write_text(f'var_dir = "{(tmp_path / "var").as_posix()}"\n\n[pricing]\nreference_rates = "{shipped.as_posix()}"\n')
    app = typer.Typer()
    app.add_typer(references_app, name="references")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["references", *args, "--config", str(config)])
    return run


def test_cli_import_then_unchanged_then_show(cli, tmp_path: Path) -> None:
    r = cli("show")
    assert r.exit_code == 0, r.output
    assert "no imported versions" in r.output and "shipped file" in r.output
    r = cli("import", str(EC2), str(PAGE1), str(PAGE2))
    assert r.exit_code == 0, r.output
    assert "version 1 written" in r.output and "reference-rates-000001.csv" in r.output
    assert "local_zone_or_wavelength" in r.output and "spot_advisor_estimate" in r.output and "low_priority" in r.output
    assert "from the file name" in r.output
    r = cli("import", str(EC2), str(PAGE1), str(PAGE2))
    assert r.exit_code == 0 and "unchanged" in r.output and "no version written" in r.output
    r = cli("show")
    assert r.exit_code == 0, r.output
    assert "reference-rates-000001.csv" in r.output and "imported version" in r.output
    assert "aws" in r.output and "2025-12-01" in r.output and "stale" in r.output
    assert (tmp_path / "var" / "references" / "reference-rates-000001.csv").is_file()


def test_cli_as_of_and_format_options(cli, tmp_path: Path) -> None:
    r = cli("import", str(PAGE1), str(PAGE2), "--format", "azure-retail", "--as-of", "2026-08-22")
    assert r.exit_code == 0, r.output
    rates = load_reference_rates(tmp_path / "var" / "references" / "reference-rates-000001.csv")
    assert rates.loc[rates["provider"] == "azure", "as_of"].max() == pd.Timestamp("2026-08-22")
    r = cli("import", str(EC2), "--as-of", "yesterday")
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output


def test_cli_bad_input_exits_2_naming_the_file(cli, tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text('{"instances": []}')
    r = cli("import", str(bad))
    assert r.exit_code == 2
    assert "import failed" in r.output and "prices.json" in r.output and "not a known price file" in r.output
    r = cli("import", str(tmp_path / "missing.json"))
    assert r.exit_code == 2 and "file not found" in r.output
    assert not (tmp_path / "var" / "references").exists() or not any((tmp_path / "var" / "references").iterdir())


def test_age_warnings_name_each_stale_provider() -> None:
    from pricing.reference_store import reference_age_warnings

    rates = pd.DataFrame({"provider": ["aws", "aws", "azure"],
                          "as_of": pd.to_datetime(["2026-01-01", "2026-01-21", "2026-11-20"])})
    w = reference_age_warnings(rates, pd.Timestamp("2026-11-30T02:00Z"), 30)
    assert w == ["aws reference prices are 313 days old (newest 2026-01-21, limit 30 days): refresh them with "
                 "`idlecap references import`"]
    assert reference_age_warnings(rates, pd.Timestamp("2026-01-25"), 30) == []  # a replay priced back then
