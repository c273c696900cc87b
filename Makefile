# Two commands on a fresh machine (README, "Set-up"):
#   make update   install into .venv, then fit the default study
#   make test     install into .venv with test tools, then run the test suite
# `python` resolves to 3.12 through pyenv's .python-version.

VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: update test test-fast lint bench

$(STAMP): pyproject.toml
	@python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python >= 3.12 is needed; with pyenv run: pyenv install 3.12")'
	test -x $(BIN)/python || python -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

update: $(STAMP)
	$(BIN)/forecast update

# The whole suite on both cores (about 5 minutes; 9 one at a time).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The fast layer: everything that does not sample, on both cores (under a minute).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

# Style (ruff) and the layer contracts between subpackages (import-linter, see pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check forecast tests benchmarks tools
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/update.py
