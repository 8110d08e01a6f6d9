"""VolumeService: translates proto <-> ``voxelgate.imaging.dicom.series.SeriesVolumes``, nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from voxelgate import wire
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom.building import VolumeGrid
from voxelgate.imaging.dicom.display import WindowRequest
from voxelgate.imaging.dicom.reformat import SlabMode
from voxelgate.imaging.dicom.series import SeriesVolumes
from voxelgate.imaging.encode import ImageFormat
from voxelgate.imaging.windowing import VoiFunction
from voxelgate.v1 import dicom_pb2, volume_pb2, volume_pb2_grpc

from .calls import call_token
from .serializers import add_service

_PLANES = {volume_pb2.AXIAL: "axial", volume_pb2.CORONAL: "coronal", volume_pb2.SAGITTAL: "sagittal"}
_FUNCTIONS = {
    volume_pb2.VOI_LINEAR: VoiFunction.LINEAR,
    volume_pb2.VOI_LINEAR_EXACT: VoiFunction.LINEAR_EXACT,
    volume_pb2.VOI_SIGMOID: VoiFunction.SIGMOID,
}
_FUNCTIONS_PB = {v: k for k, v in _FUNCTIONS.items()}
#: The value spaces of the domain (``voxelgate.imaging.dicom.archive.ValueSpace``) on the wire.
VALUE_SPACES = {
    "stored": volume_pb2.VALUE_SPACE_STORED,
    "modality": volume_pb2.VALUE_SPACE_MODALITY,
    "presentation": volume_pb2.VALUE_SPACE_PRESENTATION,
}
_ENCODINGS = {
    volume_pb2.ENCODING_PNG: ImageFormat.PNG,
    volume_pb2.ENCODING_PNG16: ImageFormat.PNG16,
    volume_pb2.ENCODING_JPEG: ImageFormat.JPEG,
    volume_pb2.ENCODING_RAW: ImageFormat.RAW,
}
#: Voxel bytes a GetVolume message carries: well under the 4 MiB a default gRPC client accepts.
_CHUNK_BYTES = 2 << 20
_SLAB: dict[int, SlabMode] = {volume_pb2.SLAB_MAX: "max", volume_pb2.SLAB_MIN: "min", volume_pb2.SLAB_MEAN: "mean"}


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


def window_request(request: volume_pb2.GetSliceRequest | dicom_pb2.GetFrameRequest) -> WindowRequest:
    """The ``windowing`` oneof (and ``window_index``) that GetSlice and GetFrame share."""
    which = request.WhichOneof("windowing")
    if which == "window":
        w = request.window
        if w.function not in _FUNCTIONS:
            raise InvalidInputError(f"unknown VOI LUT function {w.function}", subject="window")
        return WindowRequest("explicit", w.center, w.width, _FUNCTIONS[w.function])
    if which == "preset":
        return WindowRequest("preset", preset=request.preset)
    if which == "auto_window" and request.auto_window:
        return WindowRequest("auto")
    if which == "object_voi_lut" and request.object_voi_lut:
        return WindowRequest("voi_lut", object_index=request.window_index)
    return WindowRequest("object", object_index=request.window_index)


def window_pb(window: tuple[float, float, VoiFunction] | None) -> volume_pb2.Window | None:
    """The Window message of an applied window (None stays None)."""
    if window is None:
        return None
    c, w, fn = window
    return volume_pb2.Window(center=c, width=w, function=_FUNCTIONS_PB[fn])


class VolumeServicer(volume_pb2_grpc.VolumeServiceServicer):
    def __init__(self, volumes: SeriesVolumes) -> None:
        self._volumes = volumes

    def GetVolumeInfo(
        self, request: volume_pb2.GetVolumeInfoRequest, context: grpc.ServicerContext
    ) -> volume_pb2.VolumeInfo:
        layout = self._volumes.layout(request.series_instance_uid)
        stacks = []
        for i, (stack, grid) in enumerate(zip(layout.stacks, layout.grids, strict=True)):
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
            slab_mode=_SLAB[request.slab_mode],
            float_values=request.float_values,
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
            rounded=r.rounded,
            inverted=r.inverted,
            value_space=VALUE_SPACES[r.values],
        )
        window = window_pb(r.window)
        if window is not None:
            reply.window.CopyFrom(window)
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
                chunks.close()
                return
            yield chunk  # voxel bytes: written by chunk_wire as a data-only VolumeChunk


#: The wire tag of ``VolumeChunk.data``: a voxel chunk holds nothing else. (Through the file's
#: descriptor: the stubs type a message class's DESCRIPTOR as either protobuf implementation's.)
_DATA_TAG = wire.field_tag(volume_pb2.DESCRIPTOR.message_types_by_name["VolumeChunk"].fields_by_name["data"])


def chunk_wire(chunk: volume_pb2.VolumeChunk | bytes | memoryview) -> bytes:
    """A ``GetVolume`` reply: a message as protobuf serialises it; voxel bytes as a ``VolumeChunk``
    holding only ``data``, copied once, straight from the volume (see :mod:`voxelgate.wire`)."""
    if isinstance(chunk, volume_pb2.VolumeChunk):
        return chunk.SerializeToString()
    return wire.bytes_first(_DATA_TAG, chunk)


def add_volume_service(servicer: VolumeServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as the generated code does, with ``chunk_wire`` serialising ``GetVolume``."""
    add_service(
        volume_pb2_grpc.add_VolumeServiceServicer_to_server,
        servicer,
        server,
        volume_pb2.DESCRIPTOR.services_by_name["VolumeService"].full_name,
        {"GetVolume": chunk_wire},
    )
