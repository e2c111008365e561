# Set-up on a fresh machine is part of both targets: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test speed clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m vtok demo

test: $(STAMP)
	$(PY) -m pytest -q

speed: $(STAMP)
	$(PY) -m vtok bench speed

clean:
	rm -rf $(VENV) out .pytest_cache
