"""The :class:`AsyncClient`: the calls an asyncio program (the DICOMweb door) awaits, on a ``grpc.aio`` channel.

The blocking :class:`voxelgate.client.Client` in a thread pool costs an asyncio server two
thread hops per call (the loop hands the call to a thread, the thread hands the answer
back), with the GIL passed at each; awaiting the call on the loop costs neither
(docs/dicomweb.md). Calls are made as the blocking client makes them: the same requests
and results (:mod:`voxelgate.client.dicom`), deadlines, routing key, bearer token and
errors (:class:`voxelgate.client._calls.CallSettings`), and channel options (retries of the
idempotent calls among them).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from voxelgate.errors import InvalidInputError, NotFoundError, PreconditionError, UnsupportedError
from voxelgate.v1 import dicom_pb2

from ._calls import CallSettings, translate
from .dicom import Frame, FrameFormat, frame_of, frame_of_message, frame_reply_parts, frame_request
from .frame_slots import FrameSlots, MiB
from .transport import ChannelOptions, Deadlines, Kind, Settings, open_aio_channel
from .volumes import ValueSpace, Window

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: What a server answers when it cannot use a client's segment (another host, PID namespace or user);
#: the same call without a slot then tells the segment's fault from the frame's.
_SEGMENT_REFUSED = (NotFoundError, PreconditionError, UnsupportedError, InvalidInputError)
_DICOM_SERVICE = dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name


class _Shared:
    """The slots frames are lent in (None: inline), one holder for a client and its token views."""

    def __init__(self) -> None:
        self.slots: FrameSlots | None = None


class AsyncClient(CallSettings):
    """A ``grpc.aio`` connection to a voxelgate server with the calls an asyncio door awaits.

    Make it in the event loop that uses it, from a :class:`~voxelgate.client.Client` whose
    settings it takes (:meth:`like`), and close it there (``await close()``)::

        async with AsyncClient.like(vg) as avg:
            frame = await avg.get_frame(sop_instance_uid, 0, format="jpeg")

    Parameters
    ----------
    settings, options, deadlines:
        Where and how to connect, the channel's options and the calls' default deadlines,
        as :class:`~voxelgate.client.Client` takes them.

    Raises
    ------
    OSError
        A certificate or key file cannot be read.
    """

    def __init__(self, settings: Settings, options: ChannelOptions, deadlines: Deadlines) -> None:
        self._settings = settings
        self._deadlines = deadlines
        self._channel = open_aio_channel(settings, options)
        # The reply taken as received: the frame's bytes are not copied out of it (frame_of_message).
        self._get_frame = self._channel.unary_unary(
            f"/{_DICOM_SERVICE}/GetFrame",
            request_serializer=dicom_pb2.GetFrameRequest.SerializeToString,
            response_deserializer=frame_of_message,
        )
        self._get_frame_parts = self._channel.unary_unary(
            f"/{_DICOM_SERVICE}/GetFrame",
            request_serializer=dicom_pb2.GetFrameRequest.SerializeToString,
            response_deserializer=frame_reply_parts,
        )
        self._shared = _Shared()

    @classmethod
    def like(cls, client: Client) -> AsyncClient:
        """An asyncio client with ``client``'s settings, channel options and deadlines (not its token view).

        Raises
        ------
        OSError
            A certificate or key file cannot be read.
        """
        return cls(client.settings, client.channel_options, client.deadlines)

    def with_token(self, token: str) -> AsyncClient:
        """A view on this client's channel whose calls carry ``authorization: Bearer <token>``.

        As :meth:`voxelgate.client.Client.with_token`: cheap, owns nothing.

        Raises
        ------
        ValueError
            As :meth:`voxelgate.client.Client.with_token`.
        """
        view = copy.copy(self)
        view._call_metadata = self._token_metadata(token)
        return view

    async def _unary(
        self,
        method: Callable[..., Awaitable[_T]],
        request: Any,
        *,
        kind: Kind,
        timeout: float | None = None,
        route: str | None = None,
    ) -> _T:
        """``await method(request)`` with its deadline and routing key; errors raised as :mod:`voxelgate.errors`.

        Raises
        ------
        voxelgate.errors.VoxelgateError
            The call failed: the subclass of its status code, with the server's reason.
        """
        deadline = self._deadline(kind, timeout)
        try:
            return await method(request, timeout=deadline, metadata=self._metadata(route))
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc

    async def get_frame(
        self,
        sop_instance_uid: str,
        index: int = 0,
        *,
        format: FrameFormat | str = FrameFormat.RAW,
        window: Window | tuple[float, float] | None = None,
        preset: str = "",
        auto_window: bool = False,
        object_voi_lut: bool = False,
        window_index: int = 0,
        values: ValueSpace | str | None = None,
        quality: int = 0,
        timeout: float | None = None,
    ) -> Frame:
        """Frame ``index`` (from 0) of an instance: :meth:`voxelgate.client.Client.get_frame`, awaited.

        Raises
        ------
        ValueError
            As :meth:`voxelgate.client.Client.get_frame`.
        voxelgate.errors.VoxelgateError
            As :meth:`voxelgate.client.Client.get_frame`.
        """
        request = frame_request(
            sop_instance_uid,
            index,
            format=format,
            window=window,
            preset=preset,
            auto_window=auto_window,
            object_voi_lut=object_voi_lut,
            window_index=window_index,
            values=values,
            quality=quality,
        )
        frame: Frame = await self._unary(
            self._get_frame, request, kind="quick", timeout=timeout, route=sop_instance_uid
        )
        return frame

    def use_shared_memory(self, slots: int = 16, slot_bytes: int = 2 * MiB) -> None:
        """Have :meth:`lent_frame` take frames in a shared memory segment of ``slots`` slots (server on this host).

        A frame the server writes into a slot is not sent over the connection, which saves
        both processes the copies of its bytes (docs/performance.md). A server that cannot
        use the segment (on another host or in another container) is asked again without
        a slot, and the client then stops using it.

        Raises
        ------
        ValueError
            ``slots`` or ``slot_bytes`` below 1.
        voxelgate.errors.UnsupportedError
            This host has no memfd (not Linux).
        """
        old, self._shared.slots = self._shared.slots, FrameSlots(slots, slot_bytes)
        if old is not None:
            old.close()

    @property
    def uses_shared_memory(self) -> bool:
        """Whether :meth:`lent_frame` asks for frames in shared memory slots."""
        return self._shared.slots is not None

    @contextlib.asynccontextmanager
    async def lent_frame(
        self,
        sop_instance_uid: str,
        index: int = 0,
        *,
        format: FrameFormat | str = FrameFormat.RAW,
        values: ValueSpace | str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Frame]:
        """:meth:`get_frame` (raw, or an image without windowing) whose ``data`` is valid inside the block only.

        With :meth:`use_shared_memory`, the frame comes in a slot of the shared segment, and
        ``data`` is a view of that slot, which the next call may overwrite once the block is
        left: copy what must outlive it. Without, or with every slot out, or for a frame larger
        than a slot, it comes over the connection as from :meth:`get_frame`.

        Raises
        ------
        ValueError
            As :meth:`voxelgate.client.Client.get_frame`.
        voxelgate.errors.VoxelgateError
            As :meth:`voxelgate.client.Client.get_frame`.
        """
        slots = self._shared.slots
        slot = slots.take() if slots is not None else None
        if slots is None or slot is None:
            yield await self.get_frame(sop_instance_uid, index, format=format, values=values, timeout=timeout)
            return
        answered = False
        try:
            request = frame_request(sop_instance_uid, index, format=format, values=values)
            request.shared.CopyFrom(slots.request(slot))
            refused: Exception | None = None
            try:
                head, data = await self._unary(
                    self._get_frame_parts, request, kind="quick", timeout=timeout, route=sop_instance_uid
                )
            except _SEGMENT_REFUSED as exc:
                refused = exc
            answered = True
            if refused is not None:
                # The frame's own error (no such instance, frame out of range) is raised here.
                frame = await self.get_frame(sop_instance_uid, index, format=format, values=values, timeout=timeout)
                self._give_up(slots, refused)
                yield frame
            elif head.shared_bytes:
                yield frame_of(head, slots.view(slot, head.shared_bytes))
            else:  # larger than a slot (or a server that knows no slots): inline
                yield frame_of(head) if head.data else frame_of(head, data)
        finally:
            if answered:
                slots.give_back(slot)
            else:  # cancelled, or past its deadline: the server may not have finished with the slot
                slots.give_back_later(slot)

    def _give_up(self, slots: FrameSlots, reason: Exception) -> None:
        """Stop lending frames in ``slots``: the server cannot use them (it answered without a slot)."""
        if self._shared.slots is slots:
            self._shared.slots = None
            log.warning(
                "frames come over the connection: the server cannot use this client's shared memory (%s)", reason
            )
            slots.close()

    async def close(self) -> None:
        """Close the channel; calls under way are cancelled."""
        await self._channel.close()
        if self._shared.slots is not None:
            self._shared.slots.close()
            self._shared.slots = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        tls = "tls" if self._settings.uses_tls else "plaintext"
        return f"AsyncClient({self._settings.address!r}, {tls})"
