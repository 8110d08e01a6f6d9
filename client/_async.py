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

import copy
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from voxelgate.v1 import dicom_pb2

from ._calls import CallSettings, translate
from .dicom import Frame, FrameFormat, frame_of_message, frame_request
from .transport import ChannelOptions, Deadlines, Kind, Settings, open_aio_channel
from .volumes import ValueSpace, Window

if TYPE_CHECKING:
    from ._client import Client

_T = TypeVar("_T")
_DICOM_SERVICE = dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name


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

    async def close(self) -> None:
        """Close the channel; calls under way are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        tls = "tls" if self._settings.uses_tls else "plaintext"
        return f"AsyncClient({self._settings.address!r}, {tls})"
