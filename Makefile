# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-test lint locales bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## run: the bot (Telegram and/or WhatsApp) when configured, else the survey in this terminal
run: install
	$(BIN)/python -m bot

## test: lint, type-check and the whole test suite
test: install-test
	$(BIN)/ruff check core bot tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## locales: re-extract messages and update the catalogs (then translate the new entries)
locales: install-test
	$(BIN)/pybabel extract -F babel.cfg -k _ -k N_ --no-location --sort-output -w 100 -o locales/messages.pot .
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching -w 100 --ignore-obsolete

## bench: the benchmarks (minutes; not part of `make test`)
bench: install-test
	$(BIN)/python bench/skor.py
	$(BIN)/python bench/broadcast.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/screens.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
