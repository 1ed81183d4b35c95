"""The sandwiching analysis (RESEARCH.md §5): pure functions over plain tables → metrics, intervals, a report.

`tables` (input rows) · `load` (the only module using the ORM: builds the tables from a study) · `columns`
(the trials as numpy columns) · `metrics` (the definitions, reference and vectorised) · `bootstrap` (two-way
cluster bootstrap, paired tests) · `report` (assembly, JSON and Markdown; docs/report-schema.md). Studies with a
known truth for tests and bench/analytics.py are made by `oversight_dev.synthetic`, outside the product.
"""
