"""Model-alone baselines (Bowman et al. 2022 §3.3): the model answers the study's items by itself.

Zero-shot and few-shot letter scoring and best-of-N chain of thought, run as resumable jobs against TGI,
OpenAI-compatible servers or the simulated endpoint. See docs/baselines.md.
"""
