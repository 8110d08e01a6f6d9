"""What a gateway is configured with: where it is mounted, CORS, tokens, limits."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's configuration (``voxelgate dicomweb`` fills it from its options).

    Parameters
    ----------
    prefix:
        Path of the DICOMweb service root (``/dicomweb``: ``/dicomweb/studies`` is QIDO's search).
    public_url:
        Absolute URL of the service root as clients reach it (behind a proxy), used in
        BulkDataURIs and RetrieveURLs; empty: made from each request's Host and scheme.
    cors_origins:
        Origins allowed to call from a browser (``*`` for any; none: no CORS headers).
    pass_tokens:
        Pass each request's ``Authorization: Bearer`` token on to the service.
    max_upload_bytes:
        Largest STOW-RS request body (413 beyond).
    max_frames:
        Most frames one request may name (413 beyond).
    max_viewport:
        Largest rendered image side, in pixels (400 beyond).
    thumbnail_size:
        Longest side of a thumbnail, in pixels.
    qido_limit:
        Matches a QIDO-RS search returns when it names no ``limit`` (and the most it may ask).
    gzip_min_bytes:
        JSON bodies at least this long are gzipped for clients that accept it.
    threads:
        Threads making calls to the service at once (each request's calls run in one).
    shared_memory:
        Take frames from a service on this host (a loopback or Unix socket address) in shared
        memory slots rather than over the connection (``AsyncClient.use_shared_memory``).
    shared_slots, shared_slot_bytes:
        How many slots (requests whose frames are in shared memory at once; others come over the
        connection), and their size (larger frames come over the connection).
    """

    prefix: str = "/dicomweb"
    public_url: str = ""
    cors_origins: tuple[str, ...] = ()
    pass_tokens: bool = True
    max_upload_bytes: int = 2048 * MiB
    max_frames: int = 1000
    max_viewport: int = 4096
    thumbnail_size: int = 128
    qido_limit: int = 1000
    gzip_min_bytes: int = 1024
    threads: int = 32
    shared_memory: bool = True
    shared_slots: int = 16
    shared_slot_bytes: int = 2 * MiB

    def __post_init__(self) -> None:
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix starts with / and does not end with one (or is empty), got {self.prefix!r}")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url is an absolute http(s) URL, got {self.public_url!r}")
        for name in (
            "max_upload_bytes",
            "max_frames",
            "max_viewport",
            "thumbnail_size",
            "qido_limit",
            "threads",
            "shared_slots",
            "shared_slot_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
