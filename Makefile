# idlecap: `make demo` runs the main job on the bundled sample; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-forecast bench-price bench-api bench-refresh bench-risk bench-short-leads bench-backlog bench-many-files bench-fleet install clean

$(STAMP): pyproject.toml constraints.txt build-constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r build-constraints.txt
	@# an editable install is meant here: silence setuptools' notice about it (it is not a problem)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet --no-build-isolation -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/idlecap demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest_throughput.py

# Forecasting benchmark with the Nixtla peers (bench-only dependencies, pinned in bench/constraints-peers.txt)
bench-forecast: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -c bench/constraints-peers.txt statsforecast mlforecast
	$(BIN)/python bench/forecast_fleet.py

# One pricing pass (optimizer + guardrails) at 16, 100 and 1,000 pools
bench-price: $(STAMP)
	$(BIN)/python bench/price_fleet.py

# The leasing API against a bare Starlette app serving the same bytes (50 clients)
bench-api: $(STAMP)
	$(BIN)/python bench/api_serving.py

# pool_hourly refresh with the sample-level minimum vs the means-only refresh (2.9 M samples)
bench-refresh: $(STAMP)
	$(BIN)/python bench/pool_hourly_refresh.py

# Reserved safety / achievable and spot calibration of the window-risk model on Helios, a synthetic
# calendar fleet (with and without the calendar) and, when ../shared is present, Alibaba spot-GPU
bench-risk: $(STAMP)
	$(BIN)/python bench/risk_model.py

# Every shipped model vs persistence at leads 1-3, raw and anchored (bundled Helios sample)
bench-short-leads: $(STAMP)
	$(BIN)/python bench/short_leads.py

# pool_hourly refresh peak memory vs the backlog (sliced by day vs one transaction)
bench-backlog: $(STAMP)
	$(BIN)/python bench/backlog_memory.py --nodes 2000 --pools 100 --days 1 7 --unsliced

# Many small node-day files a night: batched ingest vs one transaction per file
bench-many-files: $(STAMP)
	$(BIN)/python bench/many_files.py --files 2000

# Whole nights (first 28-day backfill, steady, retraining) at 100, 400 and 1,000 pools of 20 nodes
# at 1-minute samples, in-process vs a 2-worker local Dask cluster (about 2 hours)
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet_night.py --pools 100 --nodes-per-pool 20 --days 28 --runners threads dask
	$(BIN)/python bench/fleet_night.py --pools 400 --nodes-per-pool 20 --days 28 --runners threads dask
	$(BIN)/python bench/fleet_night.py --pools 1000 --nodes-per-pool 20 --days 28 --runners dask

clean:
	rm -rf $(VENV) var .pytest_cache
