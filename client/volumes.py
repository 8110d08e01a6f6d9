"""``VolumeService`` for scripts: stacks and their geometry, slices as arrays in patient space, whole volumes.

Coordinates are DICOM patient coordinates (LPS: x to the patient's left, y to the
back, z to the head), in millimetres. An affine here maps array indices, in the
array's own axis order, to LPS (as highdicom's ``Volume`` does): for a volume's
``array[k, j, i]`` (slice, row, column), ``affine @ (k, j, i, 1)`` is the centre of
that voxel; for a slice's ``array[r, c]``, ``affine @ (r, c, 0, 1)`` is the centre of
that pixel.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import grpc

from voxelgate.errors import InternalError
from voxelgate.v1 import volume_pb2, volume_pb2_grpc

from ._calls import Calls, translate
from ._pixels import decode_image, raw_array
from .streams import fetch_volume

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK


class Plane(enum.StrEnum):
    """The plane of a slice: its normal is the patient's z (axial), y (coronal) or x (sagittal) axis."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


class VoiFunction(enum.StrEnum):
    """The VOI LUT Function of a window (PS3.3 C.11.2.1.2)."""

    LINEAR = "linear"
    LINEAR_EXACT = "linear_exact"
    SIGMOID = "sigmoid"


class Encoding(enum.StrEnum):
    """How a slice comes: windowed 8-bit PNG, 16-bit PNG, JPEG, or raw modality values (no window)."""

    PNG = "png"
    PNG16 = "png16"
    JPEG = "jpeg"
    RAW = "raw"


class ValueSpace(enum.StrEnum):
    """What an image's values are, along the display pipeline of PS3.3 C.11."""

    STORED = "stored"  #: the stored pixel values, before any LUT (what the pixel data holds)
    MODALITY = "modality"  #: after the Modality LUT (Rescale Slope/Intercept or its table): HU, ...
    PRESENTATION = "presentation"  #: P-Values: after the VOI LUT (window or table) and the Presentation LUT


class Interpolation(enum.StrEnum):
    """How a reformatted slice samples the volume."""

    LINEAR = "linear"
    NEAREST = "nearest"


class SlabMode(enum.StrEnum):
    """The projection of a thick slab: maximum, minimum or mean intensity."""

    MAX = "max"
    MIN = "min"
    MEAN = "mean"


_PLANES = {Plane.AXIAL: volume_pb2.AXIAL, Plane.CORONAL: volume_pb2.CORONAL, Plane.SAGITTAL: volume_pb2.SAGITTAL}
_VOI = {
    VoiFunction.LINEAR: volume_pb2.VOI_LINEAR,
    VoiFunction.LINEAR_EXACT: volume_pb2.VOI_LINEAR_EXACT,
    VoiFunction.SIGMOID: volume_pb2.VOI_SIGMOID,
}
_ENCODINGS = {
    Encoding.PNG: volume_pb2.ENCODING_PNG,
    Encoding.PNG16: volume_pb2.ENCODING_PNG16,
    Encoding.JPEG: volume_pb2.ENCODING_JPEG,
    Encoding.RAW: volume_pb2.ENCODING_RAW,
}
_VALUE_SPACES = {
    ValueSpace.STORED: volume_pb2.VALUE_SPACE_STORED,
    ValueSpace.MODALITY: volume_pb2.VALUE_SPACE_MODALITY,
    ValueSpace.PRESENTATION: volume_pb2.VALUE_SPACE_PRESENTATION,
}
_INTERPOLATIONS = {Interpolation.LINEAR: volume_pb2.LINEAR, Interpolation.NEAREST: volume_pb2.NEAREST}
_SLABS = {SlabMode.MAX: volume_pb2.SLAB_MAX, SlabMode.MIN: volume_pb2.SLAB_MIN, SlabMode.MEAN: volume_pb2.SLAB_MEAN}


@dataclass(frozen=True)
class Window:
    """A window: ``center`` and ``width`` in modality units, and its VOI LUT function."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR


@dataclass(frozen=True)
class Geometry:
    """A voxel grid in SimpleITK's convention: ``size`` (columns, rows, slices), ``spacing`` (mm, same
    order), ``origin`` (centre of the first voxel) and ``direction`` (3x3, row-major; its columns are the
    directions of columns, rows and slices)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the grid's array: slices, rows, columns."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def affine(self) -> np.ndarray:
        """4x4: array index ``(k, j, i, 1)`` (slice, row, column) to its voxel's centre in LPS mm."""
        import numpy as np

        d = np.array(self.direction, dtype=np.float64).reshape(3, 3)
        out = np.eye(4)
        for axis, (column, mm) in enumerate(zip((2, 1, 0), self.spacing[::-1], strict=True)):
            out[:3, axis] = d[:, column] * mm
        out[:3, 3] = self.origin
        return out


@dataclass(frozen=True)
class StackInfo:
    """A stack of a series: the slices that make one volume, its geometry, and what was corrected."""

    stack: int
    slice_count: int
    geometry: Geometry
    frame_of_reference_uid: str = ""
    dtype: str = ""
    warnings: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ExcludedFrame:
    """A frame of the series in no stack (a localizer, a secondary capture, an odd frame), and why."""

    sop_instance_uid: str
    frame: int
    reason: str


@dataclass(frozen=True)
class VolumeInfo:
    """The stacks a series splits into (``GetVolumeInfo``)."""

    series_instance_uid: str
    stacks: tuple[StackInfo, ...]
    excluded: tuple[ExcludedFrame, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Slice:
    """A slice of a stack (``GetSlice``): the image, and where each of its pixels lies in the patient.

    ``data`` is what the server sent (PNG, JPEG, or raw little-endian modality values);
    :attr:`array` is its pixels, ``(rows, columns)``. ``pixel_spacing`` is (between rows,
    between columns) in mm; ``origin`` the centre of pixel (0, 0); ``row_direction`` the
    direction of increasing column, ``column_direction`` of increasing row (LPS, unit
    vectors). ``index`` and ``position_mm`` place the slice along the plane's axis;
    ``window`` is the one applied (None for raw values and a VOI LUT table); ``inverted``
    says the Presentation LUT inverted the display (INVERSE, MONOCHROME1); ``value_space``
    is ``modality`` for raw values, ``presentation`` for images. ``rounded``: raw values
    interpolated between voxels were rounded to ``dtype`` (``float_values=True`` gives
    them unrounded).
    """

    data: bytes
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    pixel_spacing: tuple[float, float]
    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    index: int
    position_mm: float
    slice_count: int
    window: Window | None = None
    warnings: tuple[str, ...] = ()
    rounded: bool = False
    inverted: bool = False
    value_space: ValueSpace = ValueSpace.PRESENTATION

    @cached_property
    def array(self) -> np.ndarray:
        """The pixels: raw modality values (read-only, a view of ``data``), or the decoded image."""
        if self.media_type == "application/octet-stream":
            return raw_array(self.data, self.dtype, self.shape)
        return decode_image(self.data)

    @property
    def normal(self) -> np.ndarray:
        """The unit normal of the plane: ``row_direction`` x ``column_direction``."""
        import numpy as np

        return np.cross(self.row_direction, self.column_direction)

    @property
    def affine(self) -> np.ndarray:
        """4x4: ``(row, column, 0, 1)`` to the pixel's centre in LPS mm (the third column is the unit normal)."""
        import numpy as np

        out = np.eye(4)
        out[:3, 0] = np.asarray(self.column_direction) * self.pixel_spacing[0]
        out[:3, 1] = np.asarray(self.row_direction) * self.pixel_spacing[1]
        out[:3, 2] = self.normal
        out[:3, 3] = self.origin
        return out

    def save(self, path: str) -> None:
        """Write ``data`` (the image as the server encoded it) to ``path``."""
        with open(path, "wb") as fh:
            fh.write(self.data)


@dataclass(frozen=True, eq=False)
class Volume:
    """A stack's voxels in patient space (``GetVolume``): ``array[slice, row, column]`` and its geometry."""

    array: np.ndarray
    geometry: Geometry
    frame_of_reference_uid: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def affine(self) -> np.ndarray:
        """4x4: ``(k, j, i, 1)`` to the voxel's centre in LPS mm (see :attr:`Geometry.affine`)."""
        return self.geometry.affine

    def to_sitk(self) -> SimpleITK.Image:
        """The volume as a SimpleITK image with its spacing, origin and direction (SimpleITK imported here).

        ``SimpleITK.WriteImage(volume.to_sitk(), "ct.nii.gz")`` writes NIfTI (SimpleITK turns
        LPS into NIfTI's RAS); ``.nrrd`` writes NRRD.
        """
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.array)
        img.SetSpacing(self.geometry.spacing)
        img.SetOrigin(self.geometry.origin)
        img.SetDirection(self.geometry.direction)
        return img


def _geometry(g: volume_pb2.Geometry) -> Geometry:
    size = tuple(int(v) for v in g.size)
    spacing = tuple(float(v) for v in g.spacing)
    origin = tuple(float(v) for v in g.origin)
    return Geometry(
        size=(size[0], size[1], size[2]),
        spacing=(spacing[0], spacing[1], spacing[2]),
        origin=(origin[0], origin[1], origin[2]),
        direction=tuple(float(v) for v in g.direction),
    )


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    v = [float(x) for x in values] + [0.0, 0.0, 0.0]
    return (v[0], v[1], v[2])


def _window(w: Window | tuple[float, float]) -> volume_pb2.Window:
    if not isinstance(w, Window):
        center, width = w
        w = Window(float(center), float(width))
    return volume_pb2.Window(center=w.center, width=w.width, function=_VOI[VoiFunction(w.function)])


def set_windowing(
    request: Any,
    *,
    window: Window | tuple[float, float] | None,
    preset: str,
    auto_window: bool,
    object_voi_lut: bool,
    window_index: int,
) -> None:
    """Fill the ``windowing`` oneof and ``window_index`` that ``GetSliceRequest`` and ``GetFrameRequest`` share.

    None of them: the object's own window (its ``window_index``-th one).

    Raises
    ------
    ValueError
        More than one windowing, or a negative ``window_index``.
    """
    if sum((window is not None, bool(preset), auto_window, object_voi_lut)) > 1:
        raise ValueError("give at most one of window, preset, auto_window and object_voi_lut")
    if window_index < 0:
        raise ValueError(f"window_index counts the object's windows from 0, got {window_index}")
    request.window_index = window_index
    if window is not None:
        request.window.CopyFrom(_window(window))
    elif preset:
        request.preset = preset
    elif auto_window:
        request.auto_window = True
    elif object_voi_lut:
        request.object_voi_lut = True


def applied_window(reply: Any) -> Window | None:
    """The ``window`` a ``SliceImage`` or ``GetFrameResponse`` says was applied (None: unset)."""
    if not reply.HasField("window"):
        return None
    return Window(reply.window.center, reply.window.width, _voi_name(reply.window.function))


def value_space_of(reply: Any) -> ValueSpace:
    """The :class:`ValueSpace` a ``SliceImage`` or ``GetFrameResponse`` names.

    A server from before value spaces names none: its raw values were modality values and
    its images P-Values.
    """
    for name, pb in _VALUE_SPACES.items():
        if pb == reply.value_space:
            return name
    return ValueSpace.MODALITY if reply.media_type == "application/octet-stream" else ValueSpace.PRESENTATION


class VolumeCalls(Calls):
    """The calls of ``VolumeService`` (mixed into :class:`voxelgate.client.Client`)."""

    _volume: volume_pb2_grpc.VolumeServiceStub

    def get_volume_info(self, series_instance_uid: str, *, timeout: float | None = None) -> VolumeInfo:
        """The stacks a series splits into, each with its geometry and warnings.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such series.
        """
        reply = self._unary(
            self._volume.GetVolumeInfo,
            volume_pb2.GetVolumeInfoRequest(series_instance_uid=series_instance_uid),
            kind="compute",
            timeout=timeout,
            route=series_instance_uid,
        )
        return VolumeInfo(
            series_instance_uid=reply.series_instance_uid,
            stacks=tuple(
                StackInfo(
                    stack=s.stack,
                    slice_count=s.slice_count,
                    geometry=_geometry(s.geometry),
                    frame_of_reference_uid=s.frame_of_reference_uid,
                    dtype=s.dtype,
                    warnings=tuple(s.warnings),
                    sop_instance_uids=tuple(s.sop_instance_uids),
                    description=s.description,
                )
                for s in reply.stacks
            ),
            excluded=tuple(ExcludedFrame(e.sop_instance_uid, e.frame, e.reason) for e in reply.excluded),
            warnings=tuple(reply.warnings),
        )

    def get_slice(
        self,
        series_instance_uid: str,
        *,
        plane: Plane | str = Plane.AXIAL,
        index: int | None = None,
        position_mm: float | None = None,
        stack: int = 0,
        window: Window | tuple[float, float] | None = None,
        preset: str = "",
        auto_window: bool = False,
        object_voi_lut: bool = False,
        window_index: int = 0,
        encoding: Encoding | str = Encoding.PNG,
        interpolation: Interpolation | str = Interpolation.LINEAR,
        slab_mm: float = 0.0,
        slab_mode: SlabMode | str = SlabMode.MAX,
        float_values: bool = False,
        timeout: float | None = None,
    ) -> Slice:
        """An axial, coronal or sagittal slice of a stack, windowed and encoded, with its geometry.

        Exactly one of ``index`` (along the plane's axis, in the reformatted grid) and
        ``position_mm`` (along that axis, in patient coordinates). At most one of ``window``
        (a :class:`Window` or ``(center, width)``), ``preset`` (``brain``, ``bone``, ``lung``,
        ...), ``auto_window`` and ``object_voi_lut`` (a table of the object's VOI LUT
        Sequence); none of them: the object's own window (``window_index`` picks one of
        several windows or tables). ``encoding="raw"`` gives modality values, unwindowed;
        values interpolated between voxels of an integer volume are rounded to its dtype
        (:attr:`Slice.rounded`) unless ``float_values`` asks for them as float32.
        ``slab_mm`` > 0 projects a thick slab (``slab_mode``).

        Raises
        ------
        ValueError
            Not exactly one of ``index`` and ``position_mm``, several windowings, or a name
            that is not a plane, encoding, interpolation or slab mode.
        voxelgate.errors.NotFoundError
            No such series, or an index outside the stack.
        voxelgate.errors.PreconditionError
            The series forms no volume.
        """
        if (index is None) == (position_mm is None):
            raise ValueError("give exactly one of index and position_mm")
        request = volume_pb2.GetSliceRequest(
            series_instance_uid=series_instance_uid,
            stack=stack,
            plane=_PLANES[Plane(plane)],
            encoding=_ENCODINGS[Encoding(encoding)],
            interpolation=_INTERPOLATIONS[Interpolation(interpolation)],
            slab_mm=slab_mm,
            slab_mode=_SLABS[SlabMode(slab_mode)],
            float_values=float_values,
        )
        set_windowing(
            request,
            window=window,
            preset=preset,
            auto_window=auto_window,
            object_voi_lut=object_voi_lut,
            window_index=window_index,
        )
        if index is not None:
            request.index = index
        elif position_mm is not None:
            request.position_mm = float(position_mm)
        reply = self._unary(self._volume.GetSlice, request, kind="compute", timeout=timeout, route=series_instance_uid)
        spacing = [float(v) for v in reply.pixel_spacing] + [0.0, 0.0]
        return Slice(
            data=reply.data,
            media_type=reply.media_type,
            dtype=reply.dtype,
            shape=tuple(reply.shape),
            pixel_spacing=(spacing[0], spacing[1]),
            origin=_triple(reply.origin),
            row_direction=_triple(reply.row_direction),
            column_direction=_triple(reply.column_direction),
            index=reply.index,
            position_mm=reply.position_mm,
            slice_count=reply.slice_count,
            window=applied_window(reply),
            warnings=tuple(reply.warnings),
            rounded=reply.rounded,
            inverted=reply.inverted,
            value_space=value_space_of(reply),
        )

    def get_volume(self, series_instance_uid: str, *, stack: int = 0, timeout: float | None = None) -> Volume:
        """A stack's voxels (modality values) as one numpy array with its geometry.

        The chunks are written straight into the array as they arrive.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such series or stack.
        voxelgate.errors.PreconditionError
            The series forms no volume.
        voxelgate.errors.InternalError
            The stream did not hold what its header announced.
        """
        deadline = self._deadline("transfer", timeout)
        try:
            fetched = fetch_volume(
                self._channel,
                series_instance_uid,
                stack=stack,
                timeout=deadline,
                metadata=self._metadata(series_instance_uid),
            )
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc
        except RuntimeError as exc:
            raise InternalError(str(exc), subject=series_instance_uid) from exc
        header = fetched.header
        return Volume(
            array=fetched.array,
            geometry=_geometry(header.geometry),
            frame_of_reference_uid=header.frame_of_reference_uid,
            warnings=tuple(header.warnings),
        )


def _voi_name(value: Any) -> VoiFunction:
    for name, pb in _VOI.items():
        if pb == value:
            return name
    return VoiFunction.LINEAR
