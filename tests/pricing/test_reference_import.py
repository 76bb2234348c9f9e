"""Reading providers' public price files into the reference-rate contract (pricing.reference_import)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from pricing.reference import load_reference_rates
from pricing.reference_import import (
    COLUMNS,
    ReferenceImportError,
    aws_gpu,
    aws_region_kind,
    azure_sku_key,
    azure_sku_table,
    combine,
    detect_format,
    read_any,
    read_azure_retail,
    read_canonical,
    read_ec2_dump,
    read_files,
    to_csv_text,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EC2 = FIXTURES / "ec2_dump_2025-12-01.json"
PAGE1 = FIXTURES / "azure_retail_page1.json"
PAGE2 = FIXTURES / "azure_retail_page2.json"
SNAPSHOTS = FIXTURES / "azure_snapshots.csv"
SHIPPED = REPO / "data" / "reference_rates.csv"
# tests/pricing/<this file>: parents[2] is the repo, its parent holds shared/.
PRICES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "prices"
VANTAGE = PRICES / "raw" / "vantage_ec2_gpu_instances_raw_2025-11-30.json"
AZURE_SNAPSHOTS = PRICES / "raw" / "azure_pricing_radar_eu_vm_nseries_snapshots.csv"
KEY = ["sku", "region", "product"]


def row(rates: pd.DataFrame, sku: str, region: str, product: str) -> pd.Series:
    hit = rates[(rates["sku"] == sku) & (rates["region"] == region) & (rates["product"] == product)]
    assert len(hit) == 1, f"{sku} {region} {product}: {len(hit)} rows"
    return hit.iloc[0]


def keys(rates: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(rates[KEY].itertuples(index=False, name=None))


def assert_contract(rates: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """Exactly the shipped columns, and the strict loader accepts the frame as a file."""
    assert list(rates.columns) == COLUMNS
    assert list(pd.read_csv(SHIPPED, nrows=0).columns) == COLUMNS
    out = tmp_path / "out.csv"
    out.write_text(to_csv_text(rates))
    return load_reference_rates(out)


# --- format detection -------------------------------------------------------------------------

@pytest.mark.parametrize("path, fmt", [
    (EC2, "ec2-dump"), (PAGE1, "azure-retail"), (PAGE2, "azure-retail"), (SNAPSHOTS, "azure-retail"),
    (SHIPPED, "canonical"),
])
def test_detect_format_recognises_each_file_by_content(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt


def test_detect_format_rejects_unknown_shapes_naming_the_file(tmp_path: Path) -> None:
    other = tmp_path / "instances.json"
    other.write_text(json.dumps({"source": "x", "instances": []}))
    with pytest.raises(ReferenceImportError, match=r"instances\.json: not a known price file.*found keys source, instances"):
        detect_format(other)
    table = tmp_path / "prices.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(ReferenceImportError, match=r"prices\.csv: not a known price table"):
        detect_format(table)
    with pytest.raises(ReferenceImportError, match=r"nope\.json: file not found"):
        detect_format(tmp_path / "nope.json")
    with pytest.raises(ReferenceImportError, match=r"unsupported file type"):
        detect_format(_write(tmp_path / "prices.xlsx", "x"))


# --- EC2 dump ---------------------------------------------------------------------------------

def test_ec2_dump_products_prices_and_bases(tmp_path: Path) -> None:
    rates, report = read_ec2_dump(EC2)
    assert_contract(rates, tmp_path)
    p5 = {p: row(rates, "p5.48xlarge", "us-east-1", p) for p in ("on_demand", "spot", "reserved_1y", "reserved_3y")}
    assert p5["on_demand"]["usd_per_instance_hour"] == 55.04 and p5["on_demand"]["usd_per_gpu_hour"] == 6.88
    assert p5["on_demand"]["basis"] == "pay_as_you_go"
    assert p5["spot"]["usd_per_instance_hour"] == 28.08 and p5["spot"]["basis"] == "observed"
    # no 1y standard offer: convertible no-upfront, and the basis says so; 3y standard is preferred
    assert p5["reserved_1y"]["usd_per_instance_hour"] == 43.36
    assert p5["reserved_1y"]["basis"] == "1y convertible no-upfront"
    assert p5["reserved_3y"]["usd_per_instance_hour"] == 23.76
    assert p5["reserved_3y"]["basis"] == "3y standard no-upfront"
    assert (p5["on_demand"]["gpu_model"], p5["on_demand"]["gpu_variant"]) == ("H100", "SXM5-80GB")
    assert set(rates["region_kind"]) == {"region"} and set(rates["provider"]) == {"aws"}
    assert report.rows == {"aws": {"on_demand": 4, "reserved_1y": 3, "reserved_3y": 3, "spot": 2}}


def test_ec2_dump_skips_are_counted_by_reason() -> None:
    rates, report = read_ec2_dump(EC2)
    assert report.skipped["local_zone_or_wavelength"] == 1  # p5 us-east-1-atl-1
    assert report.skipped["gov_region"] == 1  # p5 us-gov-west-1
    assert report.skipped["not_a_gpu"] == 1  # inf2 (Inferentia2)
    assert report.skipped["no_gpu"] == 1  # m5.large
    assert report.skipped["spot_at_on_demand_cap"] == 1  # p5 eu-north-1: spot == on-demand
    assert report.skipped["spot_advisor_estimate"] == 1  # g6f: spot_avg without per-AZ min/max
    assert report.skipped["no_reserved_1y_price"] == 1 and report.skipped["no_reserved_3y_price"] == 1  # p5 eu-north-1
    assert "inf2.xlarge ('AWS Inferentia2', GPU=1)" in report.examples["not_a_gpu"]
    assert not rates["region"].str.contains("atl|gov").any()
    assert set(rates["sku"]) == {"p5.48xlarge", "g6f.large", "p4de.24xlarge"}
    assert "spot" not in set(rates.loc[rates["region"] == "eu-north-1", "product"])


def test_ec2_dump_fractional_gpus_and_a100_memory_split() -> None:
    rates, _ = read_ec2_dump(EC2)
    g6f = row(rates, "g6f.large", "us-east-1", "on_demand")
    assert g6f["gpus_per_instance"] == 0.125 and g6f["usd_per_gpu_hour"] == pytest.approx(1.6)
    assert g6f["gpu_model"] == "L4"
    assert row(rates, "g6f.large", "us-east-1", "reserved_1y")["basis"] == "1y standard no-upfront"
    p4de = row(rates, "p4de.24xlarge", "us-east-1", "on_demand")
    assert (p4de["gpu_model"], p4de["gpu_variant"]) == ("A100-80GB", "SXM4")
    assert p4de["usd_per_gpu_hour"] == round(27.44705 / 8, 6)


def test_ec2_dump_as_of_from_option_name_or_mtime(tmp_path: Path) -> None:
    rates, report = read_ec2_dump(EC2)
    assert set(rates["as_of"]) == {pd.Timestamp("2025-12-01")}
    assert set(rates["dataset"]) == {"aws_ec2_dump_2025-12-01"}
    assert report.as_of_from == {str(EC2): "file name"}
    assert "from the file name" in rates["source"].iloc[0] and "sha256:" in rates["source"].iloc[0]
    rates, report = read_ec2_dump(EC2, as_of="2026-02-03")
    assert set(rates["as_of"]) == {pd.Timestamp("2026-02-03")} and "from the --as-of" in rates["source"].iloc[0]
    undated = _write(tmp_path / "instances.json", EC2.read_text())
    stamp = pd.Timestamp("2026-03-04 12:00", tz="UTC").timestamp()
    os.utime(undated, (stamp, stamp))
    rates, report = read_ec2_dump(undated)
    assert set(rates["as_of"]) == {pd.Timestamp("2026-03-04")}
    assert report.as_of_from[str(undated)] == "file modification date"


@pytest.mark.parametrize("model, gpus, memory, expected", [
    ("NVIDIA A100", 8, 320, ("A100-40GB", "SXM4", 8.0)),
    ("NVIDIA A100", 8, 640, ("A100-80GB", "SXM4", 8.0)),
    ("NVIDIA Tesla V100", 8, 128, ("V100", "SXM2", 8.0)),
    ("NVIDIA Tesla V100", 8, 256, ("V100-32GB", "SXM2", 8.0)),
    ("NVIDIA T4G Tensor Core", 1, 16, ("T4G", "", 1.0)),
    ("NVIDIA T4 Tensor Core", 1, 16, ("T4", "", 1.0)),
    ("NVIDIA L40S", 1, 48, ("L40S", "", 1.0)),
    ("NVIDIA L4", 0.5, 12, ("L4", "", 0.5)),
    ("NVIDIA H200", 8, 1128, ("H200", "SXM-141GB", 8.0)),
    ("NVIDIA B300", 8, 2100, ("B300", "SXM", 8.0)),
    ("AMD Radeon Pro V520", 1, 8, ("RadeonProV520", "", 1.0)),
    ("NVIDIA GRID K520", 4, 16, ("K520", "", 4.0)),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", 1, 96, ("RTXPRO6000", "Blackwell-Server", 1.0)),
    ("AWS Trainium2", 16, 96, "not_a_gpu"),
    ("Habana Gaudi", 8, 256, "not_a_gpu"),
    ("Qualcomm AI 100 Accelerators", 8, 128, "not_a_gpu"),
    ("NVIDIA A100", 8, None, "unknown_gpu_memory"),
    ("Xilinx VU9P", 1, 64, "unknown_gpu_model"),
    (None, 0, 0, "no_gpu"),
])
def test_aws_gpu_normalisation(model, gpus, memory, expected) -> None:
    assert aws_gpu(model, gpus, memory) == expected


@pytest.mark.parametrize("region, kind", [
    ("us-east-1", "region"), ("ap-southeast-5", "region"), ("il-central-1", "region"),
    ("us-east-1-atl-1", "local_zone_or_wavelength"), ("us-east-1-wl1-bos-wlz-1", "local_zone_or_wavelength"),
    ("us-west-2-wl1", "local_zone_or_wavelength"), ("us-gov-west-1", "gov"), ("cn-north-1", "china"),
])
def test_aws_region_kind(region: str, kind: str) -> None:
    assert aws_region_kind(region) == kind


def test_ec2_dump_bad_input_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    cases = {
        "broken.json": ("[{", r"broken\.json: not JSON"),
        "dict.json": ('{"instances": []}', r"dict\.json: not an EC2 instance dump.*JSON dict"),
        "empty.json": ("[]", r"empty\.json: not an EC2 instance dump.*empty list"),
        "missing.json": ('[{"instance_type": "p5.48xlarge"}]', r"missing\.json: item 0: missing field\(s\) pricing"),
        "pricing.json": ('[{"instance_type": "p5.48xlarge", "pricing": []}]', r"pricing\.json: item 0 \(p5\.48xlarge\): `pricing` is not an object"),
    }
    for name, (text, pattern) in cases.items():
        with pytest.raises(ReferenceImportError, match=pattern):
            read_ec2_dump(_write(tmp_path / name, text))
    only_asics = [i for i in json.loads(EC2.read_text()) if i["instance_type"] in ("inf2.xlarge", "m5.large")]
    path = _write(tmp_path / "asics.json", json.dumps(only_asics))
    with pytest.raises(ReferenceImportError, match=r"asics\.json: no GPU price rows.*not_a_gpu 1"):
        read_ec2_dump(path)


def test_ec2_dump_odd_prices_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    dump = json.loads(EC2.read_text())
    dump[0]["pricing"]["us-east-1"]["linux"]["ondemand"] = "N/A"
    dump.append(dict(dump[2]))  # the same instance type twice
    rates, report = read_ec2_dump(_write(tmp_path / "odd_2025-12-01.json", json.dumps(dump)))
    assert report.skipped["bad_on_demand_price"] == 1
    assert report.skipped["duplicate_instance"] == 1
    assert "on_demand" not in set(rates.loc[(rates["sku"] == "p5.48xlarge") & (rates["region"] == "us-east-1"), "product"])
    # without an on-demand price the spot cap cannot be checked: the observed spot price stays
    assert row(rates, "p5.48xlarge", "us-east-1", "spot")["usd_per_instance_hour"] == 28.08


# --- Azure Retail Prices ----------------------------------------------------------------------

def test_azure_api_pages_meter_rules(tmp_path: Path) -> None:
    rates, report = read_azure_retail([PAGE1, PAGE2], as_of="2026-08-22")
    assert_contract(rates, tmp_path)
    assert keys(rates) == {
        ("Standard_ND96isr_H100_v5", "westeurope", "on_demand"),
        ("Standard_ND96isr_H100_v5", "westeurope", "spot"),
        ("Standard_ND96isr_H200_v5", "northeurope", "on_demand"),
        ("Standard_NC6s_v3", "westeurope", "on_demand"),
        ("Standard_NC6s_v3", "westeurope", "spot"),  # its Spot meter is on page 2
        ("Standard_NV6ads_A10_v5", "westeurope", "on_demand"),
    }
    h100 = row(rates, "Standard_ND96isr_H100_v5", "westeurope", "spot")
    assert h100["basis"] == "azure_spot_meter" and h100["usd_per_gpu_hour"] == round(23.620397 / 8, 6)
    assert (h100["gpu_model"], h100["gpu_variant"], h100["gpus_per_instance"]) == ("H100", "SXM5-80GB", 8)
    assert row(rates, "Standard_NC6s_v3", "westeurope", "on_demand")["basis"] == "pay_as_you_go"
    a10 = row(rates, "Standard_NV6ads_A10_v5", "westeurope", "on_demand")
    assert a10["gpus_per_instance"] == pytest.approx(1 / 6) and a10["usd_per_gpu_hour"] == pytest.approx(3.72)
    assert dict(report.skipped) == {
        "low_priority": 1, "windows": 1, "type_Reservation": 1, "type_DevTestConsumption": 1, "unknown_sku": 1,
        "promo": 1, "spot_not_below_pay_as_you_go": 1, "unit_not_1_hour": 1,
    }
    assert set(rates["as_of"]) == {pd.Timestamp("2026-08-22")}
    assert set(rates["dataset"]) == {"azure_retail_2026-08-22"}


def test_azure_single_page_notes_more_pages_and_counts_an_unpaired_spot() -> None:
    _, report = read_azure_retail(PAGE2, as_of="2026-08-22")
    assert report.skipped["spot_without_pay_as_you_go"] == 1  # NC6s v3 Spot; its pay-as-you-go is on page 1
    _, report = read_azure_retail(PAGE1, as_of="2026-08-22")
    assert any("NextPageLink is set" in n for n in report.notes)


def test_azure_snapshot_keeps_each_meters_newest_commit(tmp_path: Path) -> None:
    rates, report = read_azure_retail(SNAPSHOTS)
    assert_contract(rates, tmp_path)
    assert keys(rates) == {("Standard_NC4as_T4_v3", "northeurope", "on_demand"), ("Standard_NC4as_T4_v3", "northeurope", "spot")}
    assert row(rates, "Standard_NC4as_T4_v3", "northeurope", "on_demand")["usd_per_instance_hour"] == 0.587
    spot = row(rates, "Standard_NC4as_T4_v3", "northeurope", "spot")
    assert spot["usd_per_instance_hour"] == 0.195941 and spot["gpu_model"] == "T4"
    assert "@ bbbbbbbbbbbb" in spot["source"] and "2026-08-19T21:03:57" in spot["source"]
    # NC24rs v3 pay-as-you-go is missing from the listing's newest snapshot: withdrawn, and its
    # Spot meter has nothing to be checked against
    assert report.skipped["meter_withdrawn"] == 1
    assert report.skipped["spot_without_pay_as_you_go"] == 1
    assert report.skipped["low_priority"] == 1
    assert any("2 rows of older snapshots" in n for n in report.notes)
    assert set(rates["as_of"]) == {pd.Timestamp("2026-08-19")}
    assert report.as_of_from[str(SNAPSHOTS)] == "snapshot commit_ts"


def test_azure_bad_input_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReferenceImportError, match=r"page\.json: not an Azure Retail Prices page"):
        read_azure_retail(_write(tmp_path / "page.json", '{"items": []}'))
    with pytest.raises(ReferenceImportError, match=r"page\.json: `Items` is a dict"):
        read_azure_retail(_write(tmp_path / "page.json", '{"Items": {}}'))
    item = json.loads(PAGE1.read_text())["Items"][0]
    del item["retailPrice"]
    with pytest.raises(ReferenceImportError, match=r"page\.json: item 0: missing field\(s\) retailPrice"):
        read_azure_retail(_write(tmp_path / "page.json", json.dumps({"Items": [item]})))
    with pytest.raises(ReferenceImportError, match=r"snap\.csv: missing column\(s\) commit_ts"):
        read_azure_retail(_write(tmp_path / "snap.csv", "armRegionName,skuName,retailPrice\nx,y,1\n"))
    windows_only = [i for i in json.loads(PAGE1.read_text())["Items"] if "Windows" in i["productName"]]
    with pytest.raises(ReferenceImportError, match=r"win\.json: no GPU price rows.*windows 1"):
        read_azure_retail(_write(tmp_path / "win.json", json.dumps({"Items": windows_only})))


def test_azure_duplicate_meters_keep_the_newest_and_are_counted(tmp_path: Path) -> None:
    first = json.loads(PAGE1.read_text())["Items"][0]
    older = dict(first, meterId="m-old", retailPrice=140.0, effectiveStartDate="2023-01-01T00:00:00Z")
    page = _write(tmp_path / "dup_2026-08-22.json", json.dumps({"Items": [first, older], "NextPageLink": None}))
    rates, report = read_azure_retail(page)
    assert row(rates, "Standard_ND96isr_H100_v5", "westeurope", "on_demand")["usd_per_instance_hour"] == 127.816
    assert report.skipped["duplicate_meter"] == 1
    assert report.as_of_from[str(page)] == "file name" and set(rates["as_of"]) == {pd.Timestamp("2026-08-22")}


def test_azure_sku_table_covers_the_shipped_azure_rows() -> None:
    """Every shipped Azure SKU maps to the shipped GPU model, variant and count."""
    shipped = pd.read_csv(SHIPPED, keep_default_na=False)
    table = azure_sku_table()
    azure = shipped[shipped["provider"] == "azure"].drop_duplicates("sku")
    for r in azure.itertuples(index=False):
        sku, model, variant, gpus = next(v for v in table.values() if v[0] == r.sku)
        assert (model, variant, gpus) == (r.gpu_model, r.gpu_variant, r.gpus_per_instance), r.sku
    assert azure_sku_key("Standard_NC4as_T4_v3") == azure_sku_key("NC4as T4 v3") == "nc4ast4v3"
    assert table[azure_sku_key("NC144dsxlRTX6kv6")][0] == "Standard_NC144ds_xl_RTXPRO6000BSE_v6"
    assert table[azure_sku_key("Standard_ND96asr_v4")][1] == "A100-40GB"


# --- canonical and several files --------------------------------------------------------------

def test_canonical_file_reads_back_unchanged(tmp_path: Path) -> None:
    rates, report = read_canonical(SHIPPED)
    assert to_csv_text(rates) == SHIPPED.read_text()
    assert read_any(SHIPPED).rates.equals(rates)
    assert report.formats == ["canonical"]


def test_read_files_combines_formats_and_keeps_the_newest_duplicate(tmp_path: Path) -> None:
    newer = _write(tmp_path / "ec2_2026-01-15.json", EC2.read_text().replace('"55.04"', '"50.0"'))
    imported = read_files([EC2, newer, PAGE1, PAGE2], as_of=None)
    rates, report = imported
    assert row(rates, "p5.48xlarge", "us-east-1", "on_demand")["usd_per_instance_hour"] == 50.0
    assert report.skipped["superseded_by_another_file"] == 12  # every AWS key came twice
    assert set(rates["provider"]) == {"aws", "azure"}
    assert report.rows["aws"]["on_demand"] == 4 and report.rows["azure"]["spot"] == 2
    assert combine([imported]).rates.equals(rates)
    with pytest.raises(ReferenceImportError, match="unknown format 'xml'"):
        read_files([EC2], fmt="xml")


# --- the shared raw files reproduce the shipped rows ------------------------------------------

WHY_SKIP = ("the rebuild check needs ../shared/data/prices/raw beside the clone (development checkouts only); "
            "the shipped file and the import rules are tested on the bundled fixtures")


def _assert_reproduces(rates: pd.DataFrame, shipped: pd.DataFrame, n: int, text_cols: tuple[str, ...]) -> None:
    """Same keys, prices and GPU fields as the shipped rows."""
    assert keys(rates) == keys(shipped)
    both = shipped.merge(rates, on=KEY, suffixes=("_shipped", ""))
    assert len(both) == len(shipped) == n
    for col in ("usd_per_instance_hour", "usd_per_gpu_hour", "gpus_per_instance"):
        assert (both[f"{col}_shipped"] - both[col]).abs().max() <= 1e-6, col
    for col in text_cols:
        assert (both[f"{col}_shipped"] == both[col]).all(), col


@pytest.mark.skipif(not VANTAGE.is_file(), reason=WHY_SKIP)
def test_real_vantage_dump_reproduces_the_shipped_aws_rows(tmp_path: Path) -> None:
    rates, report = read_ec2_dump(VANTAGE)
    assert_contract(rates, tmp_path)
    shipped = pd.read_csv(SHIPPED, keep_default_na=False)
    _assert_reproduces(rates, shipped[shipped["dataset"] == "aws_vantage_2025-11-30"], 2713,
                       ("gpu_model", "gpu_variant", "basis", "region_kind"))
    assert set(rates["as_of"]) == {pd.Timestamp("2025-11-30")}
    # the exclusions documented in data/README.md
    assert report.skipped["spot_advisor_estimate"] == 109 and report.skipped["spot_at_on_demand_cap"] == 13


@pytest.mark.skipif(not AZURE_SNAPSHOTS.is_file(), reason=WHY_SKIP)
def test_real_azure_snapshots_reproduce_the_shipped_azure_rows(tmp_path: Path) -> None:
    rates, report = read_azure_retail(AZURE_SNAPSHOTS)
    assert_contract(rates, tmp_path)
    shipped = pd.read_csv(SHIPPED, keep_default_na=False)
    _assert_reproduces(rates, shipped[shipped["provider"] == "azure"], 201, ("gpu_model", "gpu_variant", "basis"))
    assert report.skipped["spot_not_below_pay_as_you_go"] == 3  # H200 placeholders in the EU


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
