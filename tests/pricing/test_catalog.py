"""The GPU catalogue: shipped rows sourced and dated, real nvidia-smi / scheduler names resolve,
unknown names are findings with a hint, operator aliases win and are checked."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pricing.catalog import CatalogError, GpuCatalog, load_aliases, load_classes, normalize
from pricing.reference import load_reference_rates

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def cat() -> GpuCatalog:
    return GpuCatalog.load(DATA / "gpu_catalog.csv", DATA / "gpu_aliases.csv")


def test_every_catalogue_row_carries_its_source_date_and_a_usable_reference(cat: GpuCatalog) -> None:
    rates = load_reference_rates(DATA / "reference_rates.csv")
    priced = set(rates["gpu_model"])
    c = cat.classes
    assert len(c) >= 30 and c["gpu_class"].is_unique
    assert c["source"].str.len().gt(20).all() and c["factor_basis"].str.len().gt(10).all()
    assert pd.to_datetime(c["as_of"], format="%Y-%m-%d").notna().all()
    for row in c.itertuples(index=False):
        refs = row.reference_classes.split("|")
        assert set(refs) & priced, f"{row.gpu_class}: no reference class of {refs} has a price"
        assert set(refs) <= set(c["gpu_class"])  # references are classes too (Azure's A10 arrives by import)
        assert 0 < row.performance_factor <= 1.0
        if row.performance_factor < 1:  # no exact twin: the basis says why, in numbers or words
            assert "twin" in row.factor_basis or "vs" in row.factor_basis
    # every GPU the reference file prices is a class of its own (an exact twin of itself)
    assert priced <= set(c["gpu_class"])
    a = cat.aliases
    assert a["source"].str.len().gt(10).all() and pd.to_datetime(a["as_of"], format="%Y-%m-%d").notna().all()


@pytest.mark.parametrize(("name", "cls"), [
    # names as `nvidia-smi --query-gpu=name` prints them
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100-PCIe"), ("NVIDIA H100 NVL", "H100-NVL"),
    ("NVIDIA H200", "H200"), ("NVIDIA H800", "H800"), ("NVIDIA H20", "H20"),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
    ("NVIDIA A100-PCIE-40GB", "A100-40GB"), ("NVIDIA A100 80GB PCIe", "A100-80GB"),
    ("NVIDIA A800-SXM4-80GB", "A800-80GB"), ("NVIDIA A10", "A10"), ("NVIDIA A10G", "A10G"), ("NVIDIA A30", "A30"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("Tesla T4", "T4"),
    ("Tesla V100-SXM2-16GB", "V100"), ("Tesla V100-SXM2-32GB", "V100-32GB"), ("Tesla V100-PCIE-16GB", "V100"),
    ("Tesla V100S-PCIE-32GB", "V100-32GB"), ("Tesla P100-PCIE-16GB", "P100"), ("Tesla P40", "P40"),
    ("Tesla K80", "K80"), ("NVIDIA GeForce RTX 4090", "RTX-4090"), ("NVIDIA RTX A6000", "RTX-A6000"),
    ("NVIDIA B200", "B200"), ("AMD Instinct MI300X", "MI300X"),
    # Kubernetes GPU feature discovery labels, scheduler and trace spellings
    ("NVIDIA-H100-80GB-HBM3", "H100"), ("Tesla-V100-SXM2-32GB", "V100-32GB"), ("nvidia-a100-sxm4-80gb", "A100-80GB"),
    ("a100_80g", "A100-80GB"), ("a100", "A100"), ("h100", "H100"), ("v100s", "V100-32GB"),
    ("A100-SXM4-80GB", "A100-80GB"), ("A800-SXM4-80GB", "A800-80GB"), ("H800", "H800"), ("A10", "A10"),
    ("V100", "V100"),
])
def test_real_gpu_names_resolve_to_their_class(cat: GpuCatalog, name: str, cls: str) -> None:
    r = cat.resolve_one(name)
    assert (r.gpu_class, r.match) == (cls, "alias")


def test_normalisation_ignores_case_punctuation_and_vendor_prefixes() -> None:
    assert normalize("NVIDIA A100-SXM4-80GB") == normalize("a100 sxm4 80gb") == normalize("A100_SXM4_80GB") == "A100SXM480GB"
    assert normalize("Tesla V100-SXM2-32GB") == "V100SXM232GB"
    assert normalize("NVIDIA GeForce RTX 4090") == "RTX4090"
    assert normalize("NVIDIA") == "NVIDIA"  # a bare prefix is not stripped to nothing


def test_export_variants_and_no_twin_classes_are_priced_against_a_reference_with_a_factor(cat: GpuCatalog) -> None:
    r = cat.resolve(["A800-SXM4-80GB", "H800", "A10", "Tesla P100-PCIE-16GB"]).set_index("gpu_model")
    assert r.loc["A800-SXM4-80GB", "reference_classes"] == ["A100-80GB"]
    assert r.loc["A800-SXM4-80GB", "performance_factor"] == pytest.approx(0.95)
    assert r.loc["H800", "reference_classes"] == ["H100"] and r.loc["H800", "performance_factor"] < 1
    assert "A10G" in r.loc["A10", "reference_classes"] and r.loc["A10", "performance_factor"] == 1.0
    assert r.loc["Tesla P100-PCIE-16GB", "reference_classes"][0].startswith("V100")


def test_unknown_names_are_not_guessed_but_get_a_hint(cat: GpuCatalog) -> None:
    r = cat.resolve(["GPU-series-1", "H10080GB", "philly-mixed"]).set_index("gpu_model")
    assert r["gpu_class"].isna().all() and (r["match"] == "unknown").all()
    assert r.loc["H10080GB", "suggestion"] == "H100"  # close to H100 80GB HBM3's key
    assert pd.isna(r.loc["GPU-series-1", "suggestion"])
    assert r.loc["GPU-series-1", "reference_classes"] == []


def test_operator_aliases_win_and_must_name_a_class(cat: GpuCatalog) -> None:
    r = cat.resolve(["GPU-series-1", "A10"], {"GPU-series-1": "L40S", "a10": "A10G"}).set_index("gpu_model")
    assert r.loc["GPU-series-1", "gpu_class"] == "L40S" and r.loc["GPU-series-1", "match"] == "configured"
    assert r.loc["A10", "gpu_class"] == "A10G"  # matched after normalisation, before the catalogue's own alias
    with pytest.raises(CatalogError, match=r"'x' -> 'no-such-gpu'.*classes: H100, H100-PCIe"):
        cat.check_aliases({"x": "no-such-gpu"})


def test_contradicting_or_broken_files_are_clear_errors(tmp_path: Path) -> None:
    classes = load_classes(DATA / "gpu_catalog.csv")
    bad = tmp_path / "aliases.csv"
    bad.write_text("alias,gpu_class,kind,source,as_of\n"
                   "NVIDIA A100-SXM4-80GB,A100-80GB,nvidia-smi,driver,2026-11-30\n"
                   "a100 sxm4 80gb,A100-40GB,slurm,site,2026-11-30\n"
                   "NVIDIA Z9,Z9,nvidia-smi,driver,2026-11-30\n")
    with pytest.raises(CatalogError) as e:
        load_aliases(bad, classes)
    msg = str(e.value)
    assert "line 3: alias 'a100 sxm4 80gb' -> 'A100-40GB' contradicts line 2" in msg
    assert "line 4: gpu_class 'Z9' is not in the catalogue" in msg
    text = (DATA / "gpu_catalog.csv").read_text().splitlines()
    broken = tmp_path / "catalog.csv"
    broken.write_text("\n".join([text[0], text[1].replace(",2026-11-30", ",someday"), text[1]]) + "\n")
    with pytest.raises(CatalogError) as e:
        load_classes(broken)
    assert "line 2: as_of is not a YYYY-MM-DD date" in str(e.value) and "repeated" in str(e.value)
    (tmp_path / "short.csv").write_text("gpu_class,vendor\nH100,NVIDIA\n")
    with pytest.raises(CatalogError, match="missing column"):
        load_classes(tmp_path / "short.csv")
