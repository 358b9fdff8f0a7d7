"""What tests and benchmarks share, and neither owns: starting a pipeline and watching it from
outside, a private PulseAudio server, waiting on a condition, where speech ends in a file, one
stage process alone, one stage object in-process, scraping /metrics.

Benchmarks (`bench/`) and tests (`tests/`) both import from here and never from each other
(pipecat ships its test helpers inside its package the same way: `pipecat/tests/utils.py`).
"""
