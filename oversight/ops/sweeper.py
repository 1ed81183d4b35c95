"""The embedded default's deadline enforcer: no broker, so a thread in the web process sweeps instead."""

import logging
import threading
import time

from django.db import close_old_connections

log = logging.getLogger(__name__)
_started = threading.Event()


def _run(interval_s: float) -> None:
    from oversight.assistant.services import interrupt_stale_generations
    from oversight.core.services.trials import finalize_expired_trials

    rounds = 0
    while True:
        time.sleep(interval_s)
        rounds += 1
        try:
            finalize_expired_trials()
            if rounds % 2 == 0:  # every second: a dead reply is found ~2 s after its last heartbeat
                interrupt_stale_generations()
        except Exception:  # noqa: BLE001 - a transient DB error must not kill the sweeper
            log.exception("deadline sweep failed")
        finally:
            close_old_connections()


def start_sweeper(interval_s: float = 0.5) -> None:
    """Start once per process. Half-second sweeps keep finalisation well within 2 s of the deadline."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run, args=(interval_s,), name="deadline-sweeper", daemon=True).start()
