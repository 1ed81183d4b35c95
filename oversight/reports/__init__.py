"""The sandwich report's database side: it reads a study into the plain tables of `oversight.analysis`.

`load` (the study's trials, conditions, exclusions and model-alone results → `StudyTables`) · `items` (per
condition × item: answers, the vote, the gold and the models' answers, for the console's items page) ·
`services` (the report bundle the console pages show, cached under a fingerprint of the data, and its plots) ·
`manage.py sandwich_report` (the report as Markdown or JSON). The analysis itself stays pure and lives in
`oversight.analysis`; this app is the only place where a report meets the ORM.
"""
