# The README's two commands: `make run` (the demo on http://127.0.0.1:8000) and `make test`.
# Both create $(VENV) on first use and install the pinned packages of requirements/base.lock (run) or
# requirements/dev.lock (test), then the project itself; they install again only when a lock or pyproject.toml
# changes. They install with uv, which is much faster than pip: the one on PATH (or in $(VENV)), else one they
# first install into $(VENV). `make UV= run` installs with pip only. After changing the dependencies in
# pyproject.toml: `make lock`.

VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
PYTHONS := python3.13 python3.12 python3.11 python3 python
BASE_LOCK := requirements/base.lock
DEV_LOCK := requirements/dev.lock
UV ?= $(shell command -v uv 2>/dev/null || { [ -x $(VENV)/bin/uv ] && echo $(VENV)/bin/uv; })
# The locks are resolved for every platform (--universal) from the oldest Python oversight supports, which is
# also the image's (deploy/Dockerfile); dev.lock is constrained to base.lock, so the two never disagree.
LOCK_FLAGS := --universal --python-version 3.11 --custom-compile-command "make lock"

.PHONY: run test lint format check-deploy lock clean distclean

# SERVE_LOCALLY=1: DEBUG off (no query recording or debug pages for participants) over plain HTTP on this machine,
# with a signing key generated once into var/ (oversight/settings.py). The server: bench/README.md ("Server").
run: export SERVE_LOCALLY = 1
run: $(VENV)/.installed
	$(PY) manage.py seed_demo --setup --base-url http://$(HOST):$(PORT)
	@echo "==> oversight on http://$(HOST):$(PORT)/ (demo link and researcher login above; Ctrl-C stops)"
	$(VENV)/bin/granian --interface asginl --host $(HOST) --port $(PORT) --workers 1 --ws oversight.asgi:application

# make exits 2 whenever pytest fails; pytest's own code (e.g. 5: no tests collected) is in make's message.
test: $(VENV)/.installed-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrites the code in the project's one format (ruff format; CI checks it).
format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .

# The production settings must pass Django's deployment checklist with no warnings.
check-deploy: $(VENV)/.installed
	DEBUG=0 ALLOWED_HOSTS=example.org SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(60))')" \
		$(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf staticfiles test-artifacts .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Re-resolve both locks after a change to pyproject.toml's dependencies. Pins that still satisfy pyproject.toml
# are kept, so the same inputs give the same files; `make lock UPGRADE=1` moves every pin to the newest release.
# Needs uv (installed into $(VENV) when it is not on PATH).
lock: | $(PY)
	@uv="$(UV)"; if [ -z "$$uv" ]; then \
		echo "==> installing uv into $(VENV) to resolve the locks"; \
		$(PY) -m pip install --disable-pip-version-check uv && uv=$(VENV)/bin/uv; \
	fi; \
	set -e; \
	$$uv pip compile pyproject.toml $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(BASE_LOCK); \
	$$uv pip compile pyproject.toml --extra dev -c $(BASE_LOCK) $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -o $(DEV_LOCK)

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
	exe=$$($$py -c 'import sys; print(sys.executable)'); \
	if [ -n "$(UV)" ]; then \
		echo "==> creating $(VENV) with uv for $$exe"; "$(UV)" venv --quiet --seed --python "$$exe" $(VENV); \
	else \
		echo "==> creating $(VENV) with $$exe"; $$py -m venv $(VENV); \
	fi

# $(call install,LOCK): every pinned package of LOCK, then the project itself (editable, without dependencies:
# the lock holds them all). One line says what is coming; pip's or uv's own output shows the progress.
# Without uv on PATH, uv is first installed into $(VENV) with pip (a few seconds): it then installs the ~75 pinned
# packages in about 2 s where pip takes 30 to 60 s on a 2-core VM, so a fresh clone's `make run` serves its first
# page well within a minute either way. `make UV= run` installs everything with pip instead (also the fallback
# when uv cannot be installed); pip runs with --no-compile: byte-compiling every module was most of its time
# (47 of 68 s, silent after "Installing collected packages"), and Python compiles what it imports on first use.
define install
	@n=$$(grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*' $(1) | sort -u | wc -l); uv="$(UV)"; \
	if [ -z "$$uv" ] && [ "$(origin UV)" != "command line" ]; then \
		echo "==> installing uv into $(VENV) with pip, to install the rest quickly (\`make UV= run\`: pip only)"; \
		$(PY) -m pip install --disable-pip-version-check --no-compile --quiet "uv>=0.5,<1" && uv=$(VENV)/bin/uv; \
	fi; \
	if [ -n "$$uv" ]; then \
		echo "==> installing $$n pinned packages from $(1) with uv"; \
		"$$uv" pip install --python $(PY) -r $(1) && "$$uv" pip install --python $(PY) --no-deps -e .; \
	else \
		echo "==> installing $$n pinned packages from $(1) with pip"; \
		$(PY) -m pip install --disable-pip-version-check --no-compile -r $(1) && \
		$(PY) -m pip install --disable-pip-version-check --no-compile --no-deps -e .; \
	fi
	@touch $@
endef

$(VENV)/.installed: $(BASE_LOCK) pyproject.toml | $(PY)
	$(call install,$(BASE_LOCK))

# The dev install includes the runtime one, so it refreshes both stamps.
$(VENV)/.installed-dev: $(DEV_LOCK) pyproject.toml | $(PY)
	$(call install,$(DEV_LOCK))
	@touch $(VENV)/.installed
