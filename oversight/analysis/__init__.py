"""The sandwiching analysis (RESEARCH.md §5): pure functions over plain tables → metrics, intervals, a report.

`tables` (input rows, built from a study by `oversight.reports.load`: nothing here touches the database) ·
`columns` (the trials as numpy columns) · `metrics` (the definitions, reference and vectorised) · `bootstrap`
(two-way cluster bootstrap, paired tests) · `report` (assembly, JSON and Markdown; docs/report-schema.md). Studies
with a known truth for tests and bench/analytics.py are made by `oversight_dev.synthetic`, outside the product.
"""
