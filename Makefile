# The README's two commands: `make run` (the demo on http://127.0.0.1:8000) and `make test`.
# Both create $(VENV) on first use; `pip install` runs again only when pyproject.toml changes.

VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
PYTHONS := python3.13 python3.12 python3.11 python3 python

.PHONY: run test lint check-deploy clean distclean

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py seed_demo
	@echo "==> oversight on http://$(HOST):$(PORT)/ (demo link and researcher login above; Ctrl-C stops)"
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) oversight.asgi:application

# make exits 2 whenever pytest fails; pytest's own code (e.g. 5: no tests collected) is in make's message.
test: $(VENV)/.installed-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

# The production settings must pass Django's deployment checklist with no warnings.
check-deploy: $(VENV)/.installed
	DEBUG=0 ALLOWED_HOSTS=example.org SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(60))')" \
		$(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf staticfiles test-artifacts .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Also the virtualenv and the demo database (var/).
distclean: clean
	rm -rf $(VENV) var

$(PY):
	@py=""; for c in $(PYTHONS); do \
		if $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
		found=""; for c in $(PYTHONS); do \
			v=$$($$c -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) && found="$$found $$c=$$v"; \
		done; \
		echo "oversight needs Python 3.11 or newer; found:$${found:- no Python at all}" >&2; exit 1; \
	fi; \
	echo "==> creating $(VENV) with $$($$py -c 'import sys; print(sys.executable)')"; \
	$$py -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

# The dev install includes the runtime one, so it refreshes both stamps.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.installed
