# The two commands of the README:
#   make demo   set everything up, make the sample city, serve the dashboards
#   make test   set everything up and pass the whole test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8866
DAYS ?= 365
SEED ?= 7

.PHONY: setup system demo serve synth test test-fast bench clean-hub help

help:
	@echo "make demo   - set up, fill data/city.db with the sample city, serve dashboards on $(HOST):$(PORT)"
	@echo "make test   - set up and run the whole test suite (SQLite + PostgreSQL + notebooks + browser)"
	@echo "make bench  - run the benchmarks (figures go into the README)"

setup: $(STAMP) system

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Debian packages: Chromium for the browser tests, Noto CJK so charts and pages show Chinese,
# libGL for OpenCV (opencv-python 4.x, which carries the Haar cascades), and the mosquitto
# binary: the MQTT tests start a broker of their own on a free port (kill / restart tests);
# ffmpeg makes the H.264 test streams and publishes them to rtsp-server-perl (RTSP on loopback);
# pg_dump/pg_restore (postgresql-client) back up PostgreSQL hubs; openssl makes the TLS tests' certificates.
system:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -q "Noto Sans CJK" \
		|| ! ldconfig -p | grep -q "libGL.so.1" \
		|| ! { command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; } \
		|| ! command -v pg_dump >/dev/null || ! command -v pg_restore >/dev/null \
		|| ! command -v ffmpeg >/dev/null || ! command -v rtsp-server-perl >/dev/null \
		|| ! command -v openssl >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium fonts-noto-cjk fontconfig \
			libgl1 libglib2.0-0 mosquitto postgresql-client ffmpeg rtsp-server-perl openssl; \
	fi

synth: setup
	$(BIN)/workbench synth --days $(DAYS) --seed $(SEED) --if-empty
	$(BIN)/workbench safety warn
	$(BIN)/workbench market analyse --no-progress
	$(BIN)/workbench events analyse
	$(BIN)/workbench canteen demo --clips 3
	$(BIN)/workbench linkage run

demo: synth
	$(BIN)/workbench users demo
	@echo "演示账号（每个角色一个）见 $${WORKBENCH_DATA_DIR:-data}/demo-accounts.txt；打开 http://$(HOST):$(PORT)/login 登录。"
	$(BIN)/workbench serve --host $(HOST) --port $(PORT)

serve: setup
	$(BIN)/workbench serve --host $(HOST) --port $(PORT)

test: setup
	WORKBENCH_TEST_PG_URL=$${WORKBENCH_TEST_PG_URL:-$(PG_URL)} $(BIN)/pytest

test-fast: setup
	WORKBENCH_TEST_PG_URL=$${WORKBENCH_TEST_PG_URL:-$(PG_URL)} $(BIN)/pytest -m "not browser and not slow" -p no:nbval tests

bench: setup
	WORKBENCH_TEST_PG_URL=$${WORKBENCH_TEST_PG_URL:-$(PG_URL)} $(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/serve_first_render.py
	$(BIN)/python benchmarks/warnings_bench.py
	$(BIN)/python benchmarks/market_analysis.py
	WORKBENCH_TEST_PG_URL=$${WORKBENCH_TEST_PG_URL:-$(PG_URL)} $(BIN)/python benchmarks/events_intake.py
	WORKBENCH_TEST_PG_URL=$${WORKBENCH_TEST_PG_URL:-$(PG_URL)} $(BIN)/python benchmarks/events_board.py
	$(BIN)/python benchmarks/events_forecast.py
	$(BIN)/python benchmarks/events_minneapolis.py
	$(BIN)/python benchmarks/canteen_capacity.py --json benchmarks/out/canteen/capacity.json
	$(BIN)/python benchmarks/canteen_memory.py --json benchmarks/out/canteen/memory.json

clean-hub:
	rm -f data/city.db data/city.db-wal data/city.db-shm
	rm -rf data/raw data/synth
