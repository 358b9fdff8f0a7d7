"""What listens beyond the pipeline, and who may connect: the public transcripts socket and the
front doors (Wyoming, the OpenAI API). Part of the one config tree (pipeline/config.py).

Loopback by default. Anything that listens on another address must say who may connect (CURVE keys
for ZeroMQ, an allow-list of client addresses for Wyoming, which has no authentication, an API key
for HTTP); otherwise the configuration is refused and the supervisor exits 78.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Every section: unknown keys are errors, values are frozen once loaded."""
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _is_loopback_tcp(endpoint: str) -> bool:
    return is_loopback_host(endpoint.removeprefix("tcp://").rsplit(":", 1)[0])


class CurveConfig(Strict):
    """ZeroMQ CURVE for a socket that listens beyond this machine (the public transcripts socket, the
    remote workers' pool); files made by `python -m pipeline.keys DIR`."""
    server_secret_key: str
    """The listening side's certificate with its secret key (`server.key_secret`)."""
    authorized_clients_dir: str
    """Public certificates (`*.key`) of the clients allowed to connect; anyone else is refused."""

    @model_validator(mode="after")
    def _files_exist(self) -> CurveConfig:
        if not Path(self.server_secret_key).expanduser().is_file():
            raise ValueError(f"server_secret_key {self.server_secret_key!r} is not a file (python -m pipeline.keys DIR)")
        if not Path(self.authorized_clients_dir).expanduser().is_dir():
            raise ValueError(f"authorized_clients_dir {self.authorized_clients_dir!r} is not a directory")
        return self


class EndpointsConfig(Strict):
    """`endpoints:` the public transcripts socket and who may connect to it."""
    transcripts: str | None = None
    """Public PUB socket of the sink; None = ipc://<run_dir>/transcripts.sock. A tcp:// port `*` lets
    ZeroMQ pick a free one, logged as `socket_bound`."""
    curve: CurveConfig | None = None
    """Required to listen on anything but ipc:// or loopback tcp://; optional (and honoured) there."""
    subscriber_join_ms: int = Field(300, ge=0)
    """After (re)starting, the sink waits this long before publishing, so subscribers that were
    connected to its predecessor are back (ZeroMQ reconnects every 100 ms by default); what a
    PUB socket sends before they are back is lost to them."""

    @model_validator(mode="after")
    def _private_by_default(self) -> EndpointsConfig:
        # Transcripts are what people said at home: nothing listens beyond this machine unless
        # every subscriber must prove it holds an authorized key (ZeroMQ CURVE).
        t = self.transcripts
        if t and not (t.startswith("ipc://") or (t.startswith("tcp://") and _is_loopback_tcp(t))) and not self.curve:
            raise ValueError(f"transcripts endpoint {t!r} is not ipc:// or loopback tcp://; listening on other "
                             "addresses needs CURVE authentication: set endpoints.curve (python -m pipeline.keys DIR)")
        return self


class PoolConfig(Strict):
    """`transcribe.pool:` where workers on other hosts join the pool (stages/dispatch.py)."""
    listen: str | None = None
    """tcp://ADDRESS:PORT the dispatcher listens on for remote workers; None = local workers only.
    Start one there with `python supervisor.py --role worker --connect tcp://HOST:PORT --curve
    SERVER.key CLIENT.key_secret` (or `python -m stages.transcribe` with the same flags)."""
    curve: CurveConfig | None = None
    """Required to listen on anything but loopback: only workers whose public key is in
    `authorized_clients_dir` are admitted (they hear what people said)."""

    @model_validator(mode="after")
    def _private_by_default(self) -> PoolConfig:
        if self.listen and not self.listen.startswith("tcp://"):
            raise ValueError(f"transcribe.pool.listen {self.listen!r} must be tcp://ADDRESS:PORT")
        if self.listen and not _is_loopback_tcp(self.listen) and not self.curve:
            raise ValueError(f"transcribe.pool.listen {self.listen!r} is not loopback; remote workers hear the "
                             "audio, so they must hold an authorized key: set transcribe.pool.curve "
                             "(python -m pipeline.keys DIR)")
        return self


class WyomingConfig(Strict):
    """`servers.wyoming:` the Wyoming server Home Assistant talks to (stages/wyoming.py)."""
    uri: str
    """`tcp://HOST:PORT` (Home Assistant's default port is 10300) or `unix:///path/to.sock`."""
    allowed_clients: list[str] = Field(default_factory=list)
    """Client addresses or networks (`192.168.1.20`, `192.168.1.0/24`) allowed besides loopback.
    Required when `uri` listens on anything but loopback: Wyoming has no authentication."""
    max_audio_s: float = Field(60.0, gt=0, le=600)
    """A turn longer than this is refused with an `error` event (Home Assistant's turns are seconds)."""
    max_clients: int = Field(16, gt=0)
    """Connections served at once; more are refused with an `error` event."""

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme == "unix" and parsed.path:
            return uri
        if parsed.scheme == "tcp" and parsed.hostname and parsed.port is not None:
            return uri
        raise ValueError(f"{uri!r} is not tcp://HOST:PORT or unix:///PATH")

    @field_validator("allowed_clients")
    @classmethod
    def _networks(cls, clients: list[str]) -> list[str]:
        for client in clients:
            try:
                ipaddress.ip_network(client, strict=False)
            except ValueError:
                raise ValueError(f"{client!r} is not an IP address or network") from None
        return clients

    @model_validator(mode="after")
    def _who_may_connect(self) -> WyomingConfig:
        parsed = urlparse(self.uri)
        if parsed.scheme == "tcp" and not is_loopback_host(parsed.hostname) and not self.allowed_clients:
            raise ValueError(f"{self.uri!r} listens beyond loopback and Wyoming has no authentication: "
                             "list the clients allowed to connect in servers.wyoming.allowed_clients")
        return self

    def allows(self, address: str) -> bool:
        """A client connecting from `address` (loopback is always allowed)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ip.is_loopback or any(ip in ipaddress.ip_network(c, strict=False) for c in self.allowed_clients)


class OpenAIConfig(Strict):
    """`servers.openai:` an OpenAI-compatible transcription endpoint (stages/openai_api.py)."""
    url: str
    """`http://HOST:PORT` (no TLS: put a reverse proxy in front for https)."""
    api_key: str | None = None
    """Clients must send `Authorization: Bearer <api_key>` (what OpenAI clients do with their key).
    Required when `url` listens on anything but loopback; honoured on loopback too."""
    max_upload_mb: float = Field(25.0, gt=0, le=1024)
    """Largest request body (OpenAI's own limit is 25 MB); larger ones get 413 without being read."""
    max_audio_s: float = Field(60.0, gt=0, le=600)
    """Longest audio a request may hold; longer gets 400 (`audio_too_long`)."""
    max_clients: int = Field(8, gt=0)
    """Requests served at once; more get 429."""

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname or parsed.port is None or parsed.path not in ("", "/"):
            raise ValueError(f"{url!r} is not http://HOST:PORT")
        return url

    @model_validator(mode="after")
    def _key_beyond_loopback(self) -> OpenAIConfig:
        if not is_loopback_host(urlparse(self.url).hostname) and not self.api_key:
            raise ValueError(f"{self.url!r} listens beyond loopback: set servers.openai.api_key, which clients "
                             "send as `Authorization: Bearer`")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError("servers.openai.api_key must be at least 16 characters (python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        return parsed.hostname, parsed.port


class ServersConfig(Strict):
    """`servers:` front doors besides LUXA's own `transcript` topic; each is off (null) by default."""
    wyoming: WyomingConfig | None = None
    """A URI string is short for `{uri: ...}`."""
    openai: OpenAIConfig | None = None
    """A URL string is short for `{url: ...}`."""

    @field_validator("wyoming", mode="before")
    @classmethod
    def _uri_alone(cls, value):
        return {"uri": value} if isinstance(value, str) else value

    @field_validator("openai", mode="before")
    @classmethod
    def _url_alone(cls, value):
        return {"url": value} if isinstance(value, str) else value
