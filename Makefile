# Set-up and entry points. Each target creates .venv and installs the
# project with its test extra first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test install dev browser clean

demo: $(INSTALLED)
	$(VENV)/bin/python -m dbt_rerun_dagster.demo

test: $(INSTALLED) browser
	$(VENV)/bin/python -m pytest

# The browser test drives Debian's Chromium; installing it needs root (apt-get).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

dev: $(INSTALLED)
	mkdir -p .dagster_home
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/dagster dev -h 127.0.0.1

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .dagster_home dbt_project/target dbt_project/logs dbt_project/*.duckdb
