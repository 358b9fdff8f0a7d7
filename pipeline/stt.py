"""The library entry point, as the README documents it: `from pipeline.stt import RobustSTTManager`.

The code lives in `pipeline/transcription/` (`manager.py`, `vad_manager.py`).
"""

from pipeline.audio import AudioInputError
from pipeline.transcription.engine import NoModelError
from pipeline.transcription.manager import RobustSTTManager
from pipeline.transcription.vad_manager import VADManager

__all__ = ["AudioInputError", "NoModelError", "RobustSTTManager", "VADManager"]
