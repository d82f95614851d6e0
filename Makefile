# Two entry points, each doing all set-up on a fresh machine:
#   make demo   - create .venv, install, run the offline digits demo
#   make test   - create .venv, install, lint (ruff), type-check the core (mypy), run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned here (the wheels lie on this project's machines' disk);
# pyproject.toml declares ranges for everyone else.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install benchmark clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[test,examples]' $(TORCH_PINS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	WANDB_MODE=offline $(PY) examples/digits_demo.py

test: $(STAMP)
	@# the HTML report test renders in headless Chromium (Debian's package): installed when missing, as root
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install_chromium.sh || echo "chromium could not be installed: the HTML rendering test will skip"; fi
	$(PY) -m ruff check pl_saliency tests examples benchmarks
	$(PY) -m mypy
	WANDB_MODE=offline $(PY) -m pytest -n 2 --dist loadfile -q

benchmark: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) outputs
