"""The transcription family: the engine both workers run and what it is made of.

- `engine.py`: `Engine`, a model fallback chain with a circuit breaker per model, and its `Result`;
- `fastpath.py`: short-window decoding, guarded; `hallucination.py`: is a result speech at all;
- `breaker.py`, `models.py` (offline weights, checksum-pinned), `gpu.py` (which GPU, how much memory);
- `manager.py` + `vad_manager.py`: the library facade (`RobustSTTManager`, `VADManager`) for LUXA code
  that calls the engine directly; importable as `pipeline.stt`. Nothing in `stages/` uses it.
"""
