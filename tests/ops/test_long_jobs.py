"""Long work never blocks deadlines on the embedded default (issue 15, lever 5).

A bank import runs in the web process's long-jobs thread (not in the upload's request) and writes in short
transactions; meanwhile trials expire and the in-process sweeper finalises each within 2 s of its deadline,
stamped with its own finalisation time. Runs in a subprocess on a real SQLite file (the suite's database is in
memory and shared, where neither the write lock nor WAL apply), as the web process would: one process, the
sweeper thread, the long-jobs thread.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, time
from datetime import timedelta
from pathlib import Path
import django
django.setup()
from django.core.files import File
from django.core.management import call_command
from django.contrib.auth import get_user_model
from django.utils import timezone

call_command("migrate", verbosity=0)
from oversight.banks.importers import import_custom
from oversight.core.models import Condition, Job, Study, Task, Trial
from oversight.core.services.bank_imports import bank_import_request
from oversight.core.services.participants import current_trial, participant_join
from oversight.core.services.studies import study_launch
from oversight.core.services.trials import trial_show
from oversight.ops.sweeper import start_sweeper

tmp = Path({tmp!r})
def item(i):
    return json.dumps({{"id": f"q{{i}}", "question": f"Question number {{i}}, long enough to be a real item? " * 3,
                       "options": ["one", "two", "three", "four"], "answer": "B", "subject": "s"}}) + "\n"
(tmp / "small.jsonl").write_text("".join(item(i) for i in range(5)))
(tmp / "big.jsonl").write_text("".join(item(i) for i in range({big})))

owner = get_user_model().objects.create_user("alice", "alice@example.org", "pw")
bank = import_custom(path=tmp / "small.jsonl", bank_name="small", format="jsonl").bank
study = Study.objects.create(slug="s", title="s", owner=owner, sample_seed=1, completion_code="X")
Condition.objects.create(study=study, kind="unaided", name="Unaided", position=0)
Task.objects.create(study=study, bank=bank, name="t", position=0, sample_size=5, time_limit_s=300)
study_launch(study=study)
trial_ids = []
for i in range({participants}):
    p = participant_join(study=study, params={{"PROLIFIC_PID": f"p{{i}}"}}, consent=True)
    trial_ids.append(trial_show(trial=current_trial(p)).pk)

start_sweeper(0.5)
job = bank_import_request(upload=File(open(tmp / "big.jsonl", "rb"), name="big.jsonl"), format="custom",
                          custom_format="jsonl", bank_name="big", by=owner)
returned = time.monotonic()
# Once the import writes, every trial's deadline passes together, half a second from now.
end = time.monotonic() + 120
while time.monotonic() < end:
    job.refresh_from_db()
    if job.message.startswith("Writing") or job.is_finished:
        break
    time.sleep(0.02)
writing = job.message.startswith("Writing")
deadline = timezone.now() + timedelta(seconds=0.5)
Trial.objects.filter(pk__in=trial_ids).update(deadline_at=deadline)
while time.monotonic() < end:
    job.refresh_from_db()
    left = Trial.objects.filter(pk__in=trial_ids, status="shown").count()
    if job.is_finished and not left:
        break
    time.sleep(0.05)
rows = list(Trial.objects.filter(pk__in=trial_ids).values_list("status", "submitted_at", "deadline_at"))
print(json.dumps({{
    "writing_when_deadlines_set": writing,
    "job": [job.status, job.message, (job.finished_at - deadline).total_seconds() if job.finished_at else None],
    "statuses": sorted(set(r[0] for r in rows)),
    "lags": [(r[1] - r[2]).total_seconds() for r in rows if r[1]],
    "stamps": len(set(r[1] for r in rows)),
    "request_returned_before_job_ended": job.finished_at is not None and returned < time.monotonic(),
}}))
"""


def test_a_bank_import_running_while_trials_expire_lets_each_be_finalised_on_time_with_its_own_stamp(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "oversight.settings",
        "DATA_DIR": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "LOG_LEVEL": "WARNING",
    }
    script = SCRIPT.format(tmp=str(tmp_path), big=20000, participants=60)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    # The import was still writing when the deadlines passed, and went on after them.
    assert result["writing_when_deadlines_set"], result["job"]
    status, message, finished_after_deadline_s = result["job"]
    assert status == "done", message
    assert finished_after_deadline_s > 0
    # Every trial was finalised by the sweep within 2 s of its deadline, each with the time it was finalised.
    assert result["statuses"] == ["timed_out"]
    assert len(result["lags"]) == 60
    assert max(result["lags"]) < 2.0, sorted(result["lags"])[-5:]
    assert min(result["lags"]) >= 0
    assert result["stamps"] == 60
