"""``MediaService.ListMedia`` and ``DeleteMedia`` for scripts: what media is stored, and taking it away.

Items (images and videos), groups and sequences are listed together, oldest first, a
page at a time. Deleting an item that a group or sequence holds is refused (taking a frame
out would renumber the set's later frames, which labels refer to): delete the sets first,
which keeps their items.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

from ._calls import Calls


class MediaKind(enum.StrEnum):
    """What a media id or set id names."""

    IMAGE = "image"
    VIDEO = "video"
    GROUP = "group"
    SEQUENCE = "sequence"


_KINDS = {
    MediaKind.IMAGE: media_pb2.MEDIA_KIND_IMAGE,
    MediaKind.VIDEO: media_pb2.MEDIA_KIND_VIDEO,
    MediaKind.GROUP: media_pb2.MEDIA_KIND_GROUP,
    MediaKind.SEQUENCE: media_pb2.MEDIA_KIND_SEQUENCE,
}
_KIND_OF = {pb: kind for kind, pb in _KINDS.items()}

Instant = datetime.datetime | float


@dataclass(frozen=True)
class MediaEntry:
    """A stored item, group or sequence as :meth:`MediaInventoryCalls.list_media` lists it.

    ``created`` is when an item was stored or a set made (UTC). For items: ``format`` as
    sniffed (jpeg, png, ..., mp4, mov, webm, mkv), stored ``width`` and ``height``,
    ``size_bytes`` of the file, ``source_id`` of the video a re-encode made it from, and
    ``sets``: how many groups and sequences hold it (:meth:`~MediaInventoryCalls.delete_media`
    refuses it then). ``frames`` counts an image's pages, a video's frames or a set's frames.
    """

    id: str
    kind: MediaKind
    name: str
    created: datetime.datetime
    format: str = ""
    width: int = 0
    height: int = 0
    frames: int = 0
    size_bytes: int = 0
    source_id: str = ""
    sets: int = 0


@dataclass(frozen=True)
class DeletedMedia:
    """What :meth:`MediaInventoryCalls.delete_media` removed: the bytes freed in the store (0 for a set, or
    for an item whose bytes another item holds) and the derived-cache entries dropped."""

    id: str
    kind: MediaKind
    name: str
    freed_bytes: int
    derived_entries: int


def _seconds(value: Instant | None, what: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{what} must say its time zone (datetime.timezone.utc, ...), got {value!r}")
        return value.timestamp()
    if not value > 0:
        raise ValueError(f"{what} is a datetime or unix seconds after 1970, got {value!r}")
    return float(value)


def _kinds(kinds: MediaKind | str | Iterable[MediaKind | str]) -> list[media_pb2.MediaKind]:
    chosen = [kinds] if isinstance(kinds, str) else list(kinds)
    return [_KINDS[MediaKind(k)] for k in chosen]


def _entry(e: media_pb2.MediaEntry) -> MediaEntry:
    return MediaEntry(
        id=e.id,
        kind=_KIND_OF[e.kind],
        name=e.name,
        created=datetime.datetime.fromtimestamp(e.created, datetime.UTC),
        format=e.format,
        width=e.width,
        height=e.height,
        frames=e.frames,
        size_bytes=e.size_bytes,
        source_id=e.source_id,
        sets=e.sets,
    )


class MediaInventoryCalls(Calls):
    """``ListMedia`` and ``DeleteMedia`` (mixed into :class:`voxelgate.client.Client`)."""

    _media: media_pb2_grpc.MediaServiceStub

    def list_media(
        self,
        *,
        kinds: MediaKind | str | Iterable[MediaKind | str] = (),
        name_prefix: str = "",
        created_from: Instant | None = None,
        created_to: Instant | None = None,
        source_id: str = "",
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[MediaEntry]:
        """Stored items, groups and sequences, oldest first, fetched a page at a time as the iteration goes.

        Filters: ``kinds`` (one or several :class:`MediaKind`; none: every kind), names
        starting with ``name_prefix`` (case-sensitive), created from ``created_from``
        (inclusive) to ``created_to`` (exclusive), each an aware ``datetime`` or unix
        seconds, and ``source_id``: the items :meth:`~voxelgate.client.Client.reencode` made
        from that video. ``page_size`` 0 is the server's default; ``timeout`` applies to
        each page.

        Raises
        ------
        ValueError
            An unknown kind, a naive ``datetime``, a time before 1970.
        voxelgate.errors.InvalidInputError
            A malformed filter (raised while iterating, as every error of a page).
        """
        request = media_pb2.ListMediaRequest(
            kinds=_kinds(kinds),
            name_prefix=name_prefix,
            created_from=_seconds(created_from, "created_from"),
            created_to=_seconds(created_to, "created_to"),
            source_id=source_id,
        )

        def make(page: common_pb2.PageRequest) -> media_pb2.ListMediaRequest:
            paged = media_pb2.ListMediaRequest()
            paged.CopyFrom(request)
            paged.page.CopyFrom(page)
            return paged

        return self._pages(
            self._media.ListMedia,
            make,
            lambda r: (_entry(e) for e in r.items),
            page_size=page_size,
            timeout=timeout,
        )

    def delete_media(self, id: str, *, timeout: float | None = None) -> DeletedMedia:
        """Delete a media item (with its stored file, unless another item holds the same bytes, and its
        derived-cache entries), a group or a sequence (its items stay).

        Items re-encoded from a deleted video stay, with their reports.

        Raises
        ------
        ValueError
            An empty id.
        voxelgate.errors.NotFoundError
            Nothing stored under ``id``.
        voxelgate.errors.PreconditionError
            A group or sequence holds the item (the message names them: delete them first),
            or the video is being re-encoded.
        """
        if not id:
            raise ValueError("delete_media needs a media id, group id or sequence id")
        reply = self._unary(
            self._media.DeleteMedia, media_pb2.DeleteMediaRequest(id=id), kind="quick", timeout=timeout, route=id
        )
        return DeletedMedia(
            id=reply.id,
            kind=_KIND_OF[reply.kind],
            name=reply.name,
            freed_bytes=reply.freed_bytes,
            derived_entries=reply.derived_entries,
        )
