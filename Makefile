# SatGen: `make demo` runs the main job, `make test` runs all tests.
# Both set up everything they need on a fresh Debian 12 machine, idempotently:
# QGIS + rasterio from Debian's packages, then a virtual environment over the
# system Python that QGIS uses, with torch, safetensors and pytest-qgis.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
SYS_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.satgen-installed
APT_PACKAGES := qgis python3-qgis qgis-providers xvfb python3-rasterio python3-shapely python3-pytest python3-venv python3-pip zip
# Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which qgis_process rejects:
# call the binary, with this plugin and the venv's packages, headless, in a profile of our own.
QGIS_PROCESS_ENV = QT_QPA_PLATFORM=offscreen QGIS_PLUGINPATH=$(CURDIR) \
	PYTHONPATH=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	QGIS_CUSTOM_CONFIG_PATH=$(CURDIR)/build/qgis-profile
QGIS_PROCESS = $(QGIS_PROCESS_ENV) /usr/bin/qgis_process.bin

.PHONY: help setup system-deps test demo data bench package qgis-process clean

help:
	@echo "make demo     run SatGen on real sample imagery through qgis_process"
	@echo "make test     run all tests (engine + real QGIS)"
	@echo "make data     fetch the real sample imagery into data/samples"
	@echo "make bench    measure the tile pipeline (reports/bench.json)"
	@echo "make package  build the installable plugin zip into dist/"
	@echo "make qgis-process ARGS='run satgen:apply_model -- INPUT=... MODEL=... OUTPUT=...'"

setup: system-deps $(STAMP)

system-deps:
	@if $(SYS_PYTHON) -c 'import qgis.core, rasterio, shapely, pytest' 2>/dev/null \
		&& [ -x /usr/bin/qgis_process.bin ] && command -v xvfb-run >/dev/null && command -v zip >/dev/null \
		&& $(SYS_PYTHON) -c 'import ensurepip' 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing QGIS and system packages with apt-get (a few minutes, once)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
		echo "SatGen needs QGIS and a few system packages. Install them with:"; \
		echo "  sudo apt-get install --no-install-recommends $(APT_PACKAGES)"; \
		exit 1; \
	fi

$(STAMP): requirements.txt constraints.txt
	[ -x $(PY) ] || $(SYS_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
	$(PY) -c 'import qgis.core, torch, torchvision, rasterio, safetensors, numpy; assert numpy.__version__ < "2"'
	touch $@

data: setup
	$(PY) -m engine data --dest data

test: setup data
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: setup data
	$(PY) -m engine bench

qgis-process: setup
	@mkdir -p build/qgis-profile
	@$(QGIS_PROCESS) plugins enable satgen_qgis >/dev/null
	@$(QGIS_PROCESS) $(ARGS)

demo: setup data
	@mkdir -p build/qgis-profile
	$(PY) -m engine demo --qgis-process "$(QGIS_PROCESS)"

package:
	rm -rf build/package dist/satgen_qgis-*.zip
	mkdir -p build/package dist
	cp -rL satgen_qgis build/package/satgen_qgis
	find build/package -name __pycache__ -prune -exec rm -rf {} +
	cp LICENSE README.md build/package/satgen_qgis/
	cd build/package && zip -qr9 ../../dist/satgen_qgis-$$(sed -n 's/^version=//p' ../../metadata.txt).zip satgen_qgis
	@ls -l dist/*.zip

clean:
	rm -rf build dist reports/*.log
