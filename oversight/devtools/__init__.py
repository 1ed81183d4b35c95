"""Developer tools for tests, benchmarks and deployment harnesses.

Nothing in the web app imports this package. It holds fakes of the external services the platform talks to,
starting with ``faketgi``: a stand-in for Hugging Face text-generation-inference that speaks TGI's wire format.
"""
