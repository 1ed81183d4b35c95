"""oTree's side of bench/otree_compare.py: the same flow as the platform's (20 unaided MMLU-style items, each an
answer plus a 5-point confidence, 300 s per item), as a researcher would write it in oTree 6.0.15.

bench/otree_compare.py copies this folder into a fresh temporary directory per run, writes mmlu/items.json
(the same generated items the platform's study gets) and serves it with `otree prodserver`, oTree's default
server, on its default database (SQLite, db.sqlite3 in that directory). Not a part of the product.
"""

from os import environ

SESSION_CONFIGS = [
    dict(name="mmlu", app_sequence=["mmlu"], num_demo_participants=1),
]
SESSION_CONFIG_DEFAULTS = dict(real_world_currency_per_point=1.00, participation_fee=0.00, doc="")
PARTICIPANT_FIELDS = []
SESSION_FIELDS = []
LANGUAGE_CODE = "en"
REAL_WORLD_CURRENCY_CODE = "USD"
USE_POINTS = True
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = environ.get("OTREE_ADMIN_PASSWORD")
DEMO_PAGE_INTRO_HTML = ""
SECRET_KEY = environ.get("OTREE_SECRET_KEY", "bench-only")
