"""VolumeService: translates proto <-> ``voxelgate.imaging.dicom.series.SeriesVolumes``, nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom.series import SeriesVolumes, WindowRequest
from voxelgate.imaging.dicom.volume import VolumeGrid
from voxelgate.imaging.encode import ImageFormat
from voxelgate.imaging.windowing import VoiFunction
from voxelgate.v1 import volume_pb2, volume_pb2_grpc

from . import wire
from .calls import call_token

_PLANES = {volume_pb2.AXIAL: "axial", volume_pb2.CORONAL: "coronal", volume_pb2.SAGITTAL: "sagittal"}
_FUNCTIONS = {
    volume_pb2.VOI_LINEAR: VoiFunction.LINEAR,
    volume_pb2.VOI_LINEAR_EXACT: VoiFunction.LINEAR_EXACT,
    volume_pb2.VOI_SIGMOID: VoiFunction.SIGMOID,
}
_FUNCTIONS_PB = {v: k for k, v in _FUNCTIONS.items()}
_ENCODINGS = {
    volume_pb2.ENCODING_PNG: ImageFormat.PNG,
    volume_pb2.ENCODING_PNG16: ImageFormat.PNG16,
    volume_pb2.ENCODING_JPEG: ImageFormat.JPEG,
    volume_pb2.ENCODING_RAW: ImageFormat.RAW,
}
#: Voxel bytes a GetVolume message carries: well under the 4 MiB a default gRPC client accepts.
_CHUNK_BYTES = 2 << 20
_SLAB = {volume_pb2.SLAB_MAX: "max", volume_pb2.SLAB_MIN: "min", volume_pb2.SLAB_MEAN: "mean"}


def _geometry(
    shape: tuple[int, int, int], spacing: tuple[float, ...], origin: tuple[float, ...], direction: list[float]
) -> volume_pb2.Geometry:
    slices, rows, cols = shape
    return volume_pb2.Geometry(
        size=[cols, rows, slices], spacing=list(spacing), origin=list(origin), direction=direction
    )


def _grid_geometry(grid: VolumeGrid) -> volume_pb2.Geometry:
    spacing = grid.spacing
    direction = (grid.affine[:3, :3] / spacing).ravel().tolist()
    return _geometry(grid.shape, spacing, grid.origin, direction)


def window_request(request: volume_pb2.GetSliceRequest) -> WindowRequest:
    which = request.WhichOneof("windowing")
    if which == "window":
        w = request.window
        return WindowRequest("explicit", w.center, w.width, _FUNCTIONS[w.function])
    if which == "preset":
        return WindowRequest("preset", preset=request.preset)
    if which == "auto_window" and request.auto_window:
        return WindowRequest("auto")
    return WindowRequest("object", object_index=request.window_index)


class VolumeServicer(volume_pb2_grpc.VolumeServiceServicer):
    def __init__(self, volumes: SeriesVolumes) -> None:
        self._volumes = volumes

    def GetVolumeInfo(
        self, request: volume_pb2.GetVolumeInfoRequest, context: grpc.ServicerContext
    ) -> volume_pb2.VolumeInfo:
        layout = self._volumes.layout(request.series_instance_uid)
        stacks = []
        for i, (stack, grid) in enumerate(zip(layout.stacks, layout.grids)):
            stacks.append(
                volume_pb2.StackInfo(
                    stack=i,
                    slice_count=len(stack.frames),
                    geometry=_grid_geometry(grid),
                    frame_of_reference_uid=stack.frame_of_reference_uid,
                    dtype=self._volumes.planned_dtype(layout, i),
                    warnings=list(stack.warnings) + [w for w in grid.warnings if w not in stack.warnings],
                    sop_instance_uids=sorted({f.sop_uid for f in stack.frames}),
                    description=stack.label,
                )
            )
        return volume_pb2.VolumeInfo(
            series_instance_uid=request.series_instance_uid,
            stacks=stacks,
            excluded=[
                volume_pb2.ExcludedFrame(sop_instance_uid=e.frame.sop_uid, frame=e.frame.frame_index, reason=e.reason)
                for e in layout.excluded
            ],
        )

    def GetSlice(self, request: volume_pb2.GetSliceRequest, context: grpc.ServicerContext) -> volume_pb2.SliceImage:
        if request.plane not in _PLANES:
            raise InvalidInputError("plane must be AXIAL, CORONAL or SAGITTAL")
        location = request.WhichOneof("location")
        if location is None:
            raise InvalidInputError("give index or position_mm")
        r = self._volumes.render_slice(
            request.series_instance_uid,
            stack=request.stack,
            plane=_PLANES[request.plane],
            index=request.index if location == "index" else None,
            position_mm=request.position_mm if location == "position_mm" else None,
            window=window_request(request),
            fmt=_ENCODINGS[request.encoding],
            interpolation="nearest" if request.interpolation == volume_pb2.NEAREST else "linear",
            slab_mm=request.slab_mm,
            slab_mode=_SLAB[request.slab_mode],  # type: ignore[arg-type]
            cancel=call_token(context),
        )
        g = r.geometry
        reply = volume_pb2.SliceImage(
            data=r.payload,
            media_type=r.media_type,
            dtype=r.dtype,
            shape=list(r.shape),
            pixel_spacing=list(g.pixel_spacing),
            origin=list(g.origin),
            row_direction=list(g.row_direction),
            column_direction=list(g.column_direction),
            index=g.index,
            position_mm=g.position_mm,
            slice_count=r.slice_count,
            warnings=list(r.warnings),
        )
        if r.window is not None:
            c, w, fn = r.window
            reply.window.CopyFrom(volume_pb2.Window(center=c, width=w, function=_FUNCTIONS_PB[fn]))
        return reply

    def GetVolume(
        self, request: volume_pb2.GetVolumeRequest, context: grpc.ServicerContext
    ) -> Iterator[volume_pb2.VolumeChunk | bytes | memoryview]:
        # A volume built for this call goes to the derived cache once the last chunk is out. The
        # header is a message; the voxel chunks are views of the volume that chunk_wire sends.
        vol, chunks = self._volumes.stream_volume(
            request.series_instance_uid, request.stack, chunk_bytes=_CHUNK_BYTES, cancel=call_token(context)
        )
        header = volume_pb2.VolumeHeader(
            geometry=_geometry(vol.shape, vol.spacing, vol.origin, vol.direction.ravel().tolist()),
            dtype=vol.array.dtype.newbyteorder("<").str,
            shape=list(vol.shape),
            total_bytes=int(vol.array.nbytes),
            warnings=list(vol.warnings),
            frame_of_reference_uid=vol.frame_of_reference_uid,
        )
        yield volume_pb2.VolumeChunk(header=header)
        for chunk in chunks:
            if not context.is_active():
                chunks.close()  # type: ignore[attr-defined]
                return
            yield chunk  # voxel bytes: written by chunk_wire as a data-only VolumeChunk


#: The wire tag of ``VolumeChunk.data``: a voxel chunk holds nothing else.
_DATA_TAG = wire.field_tag(volume_pb2.VolumeChunk.DESCRIPTOR.fields_by_name["data"])


def chunk_wire(chunk: volume_pb2.VolumeChunk | bytes | memoryview) -> bytes:
    """A ``GetVolume`` reply: a message as protobuf serialises it; voxel bytes as a ``VolumeChunk``
    holding only ``data``, copied once, straight from the volume (see :mod:`voxelgate.server.wire`)."""
    if isinstance(chunk, volume_pb2.VolumeChunk):
        return chunk.SerializeToString()
    return wire.bytes_first(_DATA_TAG, chunk)


def add_volume_service(servicer: VolumeServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as the generated code does, with ``chunk_wire`` serialising ``GetVolume``."""
    wire.add_service(
        volume_pb2_grpc.add_VolumeServiceServicer_to_server,
        servicer,
        server,
        volume_pb2.DESCRIPTOR.services_by_name["VolumeService"].full_name,
        {"GetVolume": chunk_wire},
    )
