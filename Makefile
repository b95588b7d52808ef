# Two commands do all the set-up on a fresh machine:
#   make demo   # venv + install + the demo
#   make test   # venv + install (with test extras) + the default test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q

.PHONY: demo test test-all rehearsal clean

$(VENV)/.base: pyproject.toml
	@PYBIN=$$(bash tools/find_python.sh) && echo "using $$PYBIN" && "$$PYBIN" -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m nanoemox_jax.demo --workdir demo_out

test: $(VENV)/.test
	$(PY) -m pytest -m "not slow"

test-all: $(VENV)/.test
	$(PY) -m pytest

# benchmarks/rehearsal.py at the tiny size (a guard, 9 min), then at the full size (60 min, 17.4 GB of RAM; alone)
rehearsal: $(VENV)/.test
	$(PY) -m pytest -m slow tests/test_rehearsal.py -s -x

clean:
	rm -rf $(VENV) demo_out .pytest_cache
