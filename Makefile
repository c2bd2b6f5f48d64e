# The two quick-start commands, `make demo` and `make test`, each install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo serve test mutation bench build deploy verify verify-local report clean

# .venv/ros: the ROS CDK packages of tests/test_ros_spec.py, apart because they conflict with the
# runtime pins (requirements-ros.txt says why).
$(STAMP): function/requirements.txt requirements-dev.txt requirements-ros.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m venv $(VENV)/ros
	$(VENV)/ros/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-ros.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# The SLS dashboard's panels, computed from the local Logstore that `make demo` fills, as one
# self-contained page: .localcloud/report.html.
report: $(STAMP)
	$(PY) scripts/report.py

serve: $(STAMP)
	$(PY) scripts/demo.py --serve

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# Mutation testing of function/dwrerun/ (docs/reliability.md, Mutation testing): too slow for CI.
# The score of SAMPLE mutants drawn at random, with its interval (every mutant takes hours on two
# cores: SAMPLE=all); `make mutation MODULES="policy rerun"` draws only from those modules.
SAMPLE ?= 400
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(if $(filter all,$(SAMPLE)),,--sample $(SAMPLE)) $(MODULES)

bench: $(STAMP)
	$(PY) scripts/bench/bench.py
	$(PY) scripts/bench/by_filter.py
	$(PY) scripts/bench/sweep.py

build: $(STAMP)
	scripts/build

deploy: $(STAMP)
	scripts/deploy

# Check every link of the deployment template.yml describes (scripts/verify; docs/deploy.md):
# one line each, and the fix for a broken one. `make verify-local` checks the local cloud that
# `make serve` runs in another shell; VERIFY_ARGS passes more, e.g. VERIFY_ARGS="-a prod".
verify: $(STAMP)
	$(PY) scripts/verify $(VERIFY_ARGS)

verify-local: $(STAMP)
	$(PY) scripts/verify --local $(VERIFY_ARGS)

clean:
	rm -rf $(VENV) build .localcloud .pytest_cache .ruff_cache .mutation
