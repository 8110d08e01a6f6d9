"""DIMSE statuses the node answers with (PS3.4 B.2.3 for C-STORE, PS3.7 C for the general ones)."""

from __future__ import annotations

from dataclasses import dataclass

from voxelgate.client import IngestResult, Outcome

from .config import ConflictPolicy

SUCCESS = 0x0000
#: Warning: Coercion of Data Elements. Answered under ``on_conflict = "keep"``: the instance
#: stored before was kept and the one sent was not (its sender should know).
KEPT_STORED = 0xB000
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.5: failure, an instance with this UID exists
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (a size limit of the service, the spool full)
CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand (a file the service cannot read as DICOM)
UNSUPPORTED = 0xC001  # Error: Cannot understand (valid but not supported by the service)
PROCESSING_FAILURE = 0xC0FF  # Error: Cannot understand (any other refusal; the comment says why)

#: Error Comment (0000,0902) is LO: 64 characters at most.
COMMENT_LENGTH = 64

_BY_CODE = {
    "INVALID_ARGUMENT": CANNOT_UNDERSTAND,
    "OUT_OF_RANGE": CANNOT_UNDERSTAND,
    "RESOURCE_EXHAUSTED": OUT_OF_RESOURCES,
    "UNIMPLEMENTED": UNSUPPORTED,
    "PERMISSION_DENIED": NOT_AUTHORIZED,
    "ALREADY_EXISTS": DUPLICATE_SOP_INSTANCE,
}


@dataclass(frozen=True)
class StoreStatus:
    """What a C-STORE is answered with: the status and, for a failure, the Error Comment."""

    status: int
    comment: str = ""

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS or self.status >> 12 == 0xB


def comment(reason: str, name: str = "") -> str:
    """The reason as an Error Comment: without the file's name the service prefixed, at most 64 characters."""
    if name and reason.startswith(f"{name}: "):
        reason = reason[len(name) + 2 :]
    text = " ".join(reason.split())
    text = "".join(c if c.isascii() and c.isprintable() and c != "\\" else "?" for c in text)
    return text if len(text) <= COMMENT_LENGTH else text[: COMMENT_LENGTH - 3] + "..."


def store_status(result: IngestResult, policy: ConflictPolicy) -> StoreStatus:
    """The C-STORE answer for the service's result of the file.

    Stored, duplicate (the same bytes were there) and replaced are success. A refused
    file is a failure whose comment is the service's reason. ``ALREADY_EXISTS`` (other
    bytes under the same SOP Instance UID) follows ``policy``: ``reject`` answers
    0111 Duplicate SOP Instance, ``keep`` a warning (the stored one stays), ``overwrite``
    never meets it (the file was sent to replace).
    """
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.REPLACED):
        return StoreStatus(SUCCESS)
    if result.code == "ALREADY_EXISTS" and policy == "keep":
        return StoreStatus(KEPT_STORED, "an instance with this UID was stored before; kept it")
    return StoreStatus(_BY_CODE.get(result.code, PROCESSING_FAILURE), comment(result.reason, result.name))
