"""A private PulseAudio server with a virtual microphone, so capture goes PortAudio -> sounddevice
exactly as on a laptop: `paplay --device=virtmic` plays into it, the `vmic` source records it.

`PulseServer(rooms=("kitchen", "salon"))` adds one more microphone per room: PortAudio lists it as an
input device of that name (an ALSA `pulse` PCM, declared in the server's own ALSA config), as it would
list two USB microphones, and `play(wav, room)` plays into that one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

MODULES = ["--load=module-native-protocol-unix", "--load=module-null-sink sink_name=virtmic",
           "--load=module-remap-source master=virtmic.monitor source_name=vmic"]


class PulseServer:
    """A PulseAudio server of its own (private runtime dir), started and stopped by its user."""
    def __init__(self, rooms: tuple[str, ...] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="luxa-pulse-"))
        self.rooms = rooms
        # What a client (the pipeline) needs to reach this server. Not HOME: a pipeline started with
        # another HOME looked for its models (Whisper, Smart Turn) in this temporary directory.
        self.env = {"XDG_RUNTIME_DIR": str(self.dir), "PULSE_RUNTIME_PATH": str(self.dir / "pulse"),
                    "PULSE_COOKIE": str(self.dir / ".config" / "pulse" / "cookie")}
        if rooms:  # ALSA reads $XDG_CONFIG_HOME/alsa/asoundrc: the rooms' microphones as named devices
            (self.dir / "alsa").mkdir()
            (self.dir / "alsa" / "asoundrc").write_text("".join(
                f'pcm.{room} {{ type pulse; device vmic_{room}; hint {{ show on; description "{room} microphone" }} }}\n'
                for room in rooms))
            self.env["XDG_CONFIG_HOME"] = str(self.dir)

    def _run(self, *cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        # The server's own files (cookie, config) live in its directory, not the user's home.
        return subprocess.run(cmd, env={**os.environ, **self.env, "HOME": str(self.dir)}, capture_output=True,
                              text=True, timeout=timeout, check=check)

    def start(self) -> None:
        """Raises RuntimeError with PulseAudio's own words when it cannot start."""
        if not shutil.which("pulseaudio") or not shutil.which("pactl"):
            raise RuntimeError("pulseaudio/pactl are not installed (Debian: pulseaudio pulseaudio-utils)")
        rooms = [m for room in self.rooms for m in (f"--load=module-null-sink sink_name=virtmic_{room}",
                                                    f"--load=module-remap-source master=virtmic_{room}.monitor "
                                                    f"source_name=vmic_{room}")]
        started = self._run("pulseaudio", "--daemonize", "--exit-idle-time=-1", "-n", *MODULES, *rooms, check=False)
        deadline = time.monotonic() + 10
        while self._run("pactl", "info", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start: {started.stderr.strip()[-500:]}")
            time.sleep(0.1)  # polling the server's own readiness, against a deadline
        self._run("pactl", "set-default-source", "vmic")

    def play(self, wav: Path, room: str | None = None) -> None:
        """Blocks until the file has been played into the virtual microphone (or the room's)."""
        self._run("paplay", f"--device=virtmic_{room}" if room else "--device=virtmic", str(wav), timeout=120)

    def stop(self) -> None:
        self._run("pulseaudio", "--kill", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
