"""``DicomService.GetBulkData`` for scripts and doors: the values a BulkDataURI names, as stored.

:meth:`~voxelgate.client.Client.get_metadata_json` writes each bulk value (binary values over
its threshold, and always the pixel data) as a relative ``BulkDataURI``::

    studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010
    studies/{study}/series/{series}/instances/{sop}/bulk/54000100/0/54001010

:meth:`BulkDataCalls.get_bulk_data` takes it back (or an instance and the element's tag
path) and returns the value's bytes as the file stores them: in its transfer syntax's byte
order, and compressed when the pixel data is encapsulated. A frame of the pixel data is that
frame's bytes (native) or its fragments joined (its bitstream, as WADO-RS frames carry it);
``offset`` and ``length`` give a byte range of the value or frame.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from voxelgate.errors import InternalError
from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

from ._calls import Calls

#: The Pixel Data element, the tag path :meth:`BulkDataCalls.get_bulk_data` takes by default.
PIXEL_DATA = "7FE00010"
_INSTANCE = re.compile(r"(?:^|/)instances/([^/]+)/bulk/")


@dataclass(frozen=True)
class BulkDataHeader:
    """What the server says of a bulk value before its bytes.

    ``total_length`` is the whole value's (or frame's) size, ``offset`` and ``length`` the
    range that follows. The bytes are as stored: in ``transfer_syntax_uid``'s byte order,
    and compressed when ``encapsulated`` (a whole encapsulated value is its items, with the
    Basic Offset Table; a frame is its fragments joined).
    """

    vr: str
    total_length: int
    offset: int
    length: int
    transfer_syntax_uid: str
    encapsulated: bool = False


@dataclass(frozen=True, eq=False)
class BulkData:
    """A bulk value (or a frame of the pixel data, or a range of either) and its header."""

    header: BulkDataHeader
    data: bytes


class BulkDataStream(Iterator[bytes]):
    """The bytes of a bulk value in chunks as they arrive, its :attr:`header` known before the first.

    Iterate it for the chunks; leaving early (``close()``, ``break`` in a ``with`` block, or
    dropping it) cancels the call. Errors of the call after the header are raised while
    iterating, as :mod:`voxelgate.errors` classes.
    """

    def __init__(self, header: BulkDataHeader, replies: Generator[Any, None, None]) -> None:
        self.header = header
        self._replies = replies
        self._received = 0

    def __iter__(self) -> BulkDataStream:
        return self

    def __next__(self) -> bytes:
        for reply in self._replies:
            if reply.WhichOneof("part") != "data":
                raise InternalError("GetBulkData sent a second header")
            self._received += len(reply.data)
            if self._received > self.header.length:
                raise InternalError(f"GetBulkData sent more than the {self.header.length} bytes its header announced")
            data: bytes = reply.data
            return data
        if self._received != self.header.length:
            raise InternalError(f"GetBulkData sent {self._received} of the {self.header.length} bytes announced")
        raise StopIteration

    def close(self) -> None:
        """Stop receiving: the call is cancelled (nothing if it is over)."""
        self._replies.close()

    def __enter__(self) -> BulkDataStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _request(
    uri: str, sop_instance_uid: str, tag_path: str, frame: int | None, offset: int, length: int | None
) -> dicom_pb2.GetBulkDataRequest:
    if bool(uri) == bool(sop_instance_uid):
        raise ValueError("give exactly one of uri and sop_instance_uid")
    if frame is not None and frame < 0:
        raise ValueError(f"frame counts from 0, got {frame}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    if length is not None and length < 1:
        raise ValueError(f"length must be at least 1 (None: to the end), got {length}")
    request = dicom_pb2.GetBulkDataRequest(offset=offset, length=length or 0)
    if uri:
        request.uri = uri
    else:
        request.element.CopyFrom(dicom_pb2.BulkDataElement(sop_instance_uid=sop_instance_uid, tag_path=tag_path))
    if frame is not None:
        request.frame = frame
    return request


def _route(uri: str, sop_instance_uid: str) -> str | None:
    if sop_instance_uid:
        return sop_instance_uid
    found = _INSTANCE.search(uri)
    return found.group(1) if found else None


class BulkDataCalls(Calls):
    """``DicomService.GetBulkData`` (mixed into :class:`voxelgate.client.Client`)."""

    _dicom: dicom_pb2_grpc.DicomServiceStub

    def iter_bulk_data(
        self,
        uri: str = "",
        *,
        sop_instance_uid: str = "",
        tag_path: str = PIXEL_DATA,
        frame: int | None = None,
        offset: int = 0,
        length: int | None = None,
        timeout: float | None = None,
    ) -> BulkDataStream:
        """A bulk value as it arrives: the header first (:attr:`BulkDataStream.header`), then its bytes.

        Name the value by the ``BulkDataURI`` the metadata gives (relative, or absolute as a
        DICOMweb gateway writes it: what precedes ``studies/`` is ignored), or by
        ``sop_instance_uid`` and the element's ``tag_path`` (tags and 0-based item indexes,
        ``"00283010/0/00283006"``; default the Pixel Data). ``frame`` (0-based, pixel data
        only) takes one frame; ``offset`` and ``length`` (None: to the end) a byte range of
        the value or frame. The call waits for the header, so that an unknown instance or
        element raises here, before any byte.

        Raises
        ------
        ValueError
            Not exactly one of ``uri`` and ``sop_instance_uid``; a negative frame or offset; a
            length below 1.
        voxelgate.errors.NotFoundError
            No such instance, element or frame (the message gives the frame count).
        voxelgate.errors.InvalidInputError
            A malformed URI or tag path, a range outside the value, ``frame`` of a value that
            is not pixel data.
        voxelgate.errors.InternalError
            The stream did not start with a header.
        """
        request = _request(uri, sop_instance_uid, tag_path, frame, offset, length)
        route = _route(uri, sop_instance_uid)
        replies = self._stream(self._dicom.GetBulkData, request, kind="transfer", timeout=timeout, route=route)
        first = next(replies, None)
        if first is None or first.WhichOneof("part") != "header":
            replies.close()
            raise InternalError("GetBulkData did not start with a header", subject=sop_instance_uid or uri)
        h = first.header
        header = BulkDataHeader(
            vr=h.vr,
            total_length=h.total_length,
            offset=h.offset,
            length=h.length,
            transfer_syntax_uid=h.transfer_syntax_uid,
            encapsulated=h.encapsulated,
        )
        return BulkDataStream(header, replies)

    def get_bulk_data(
        self,
        uri: str = "",
        *,
        sop_instance_uid: str = "",
        tag_path: str = PIXEL_DATA,
        frame: int | None = None,
        offset: int = 0,
        length: int | None = None,
        timeout: float | None = None,
    ) -> BulkData:
        """A bulk value (or a frame of the pixel data, or a byte range) whole, with its header.

        The arguments are :meth:`iter_bulk_data`'s::

            lut = vg.get_bulk_data(model["00283010"]["Value"][0]["00283006"]["BulkDataURI"]).data
            bitstream = vg.get_bulk_data(sop_instance_uid=uid, frame=4).data  # a JPEG frame as stored

        Raises
        ------
        ValueError
            As :meth:`iter_bulk_data`.
        voxelgate.errors.NotFoundError
            No such instance, element or frame.
        voxelgate.errors.InvalidInputError
            A malformed URI or tag path, a range outside the value.
        voxelgate.errors.InternalError
            The stream did not hold what its header announced.
        """
        with self.iter_bulk_data(
            uri,
            sop_instance_uid=sop_instance_uid,
            tag_path=tag_path,
            frame=frame,
            offset=offset,
            length=length,
            timeout=timeout,
        ) as stream:
            data = b"".join(stream)
        return BulkData(stream.header, data)
