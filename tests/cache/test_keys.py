"""The one function that builds derived-cache keys."""

from __future__ import annotations

import math

import pytest

from voxelgate.cache.keys import SCHEMA_VERSION, make_key

SHA = "ab" * 32


def test_same_inputs_give_the_same_key() -> None:
    params = {"frame": 3, "format": "png", "window": [40.0, 400.0], "invert": False, "lut": None}
    a = make_key("dicom", "frame", SHA, params, version=2)
    b = make_key("dicom", "frame", SHA, dict(reversed(list(params.items()))), version=2)
    assert a == b
    assert a == (
        f"dicom/v{SCHEMA_VERSION}/frame/v2/{SHA}"
        '?format="png"&frame=3&invert=false&lut=null&window=[40.000000,400.000000]'
    )


def test_every_part_changes_the_key() -> None:
    base = make_key("dicom", "frame", SHA, {"frame": 0})
    others = {
        make_key("media", "frame", SHA, {"frame": 0}),
        make_key("dicom", "volume", SHA, {"frame": 0}),
        make_key("dicom", "frame", "cd" * 32, {"frame": 0}),
        make_key("dicom", "frame", SHA, {"frame": 1}),
        make_key("dicom", "frame", SHA, {"frame": 0}, version=2),
        make_key("dicom", "frame", SHA, {"frame": "0"}),
        make_key("dicom", "frame", SHA),
    }
    assert base not in others
    assert len(others) == 7


def test_floats_are_normalised_to_fixed_precision() -> None:
    a = make_key("dicom", "slice", SHA, {"level": 0.1 + 0.2, "width": 400.0})
    b = make_key("dicom", "slice", SHA, {"level": 0.3, "width": 400.0000000001})
    assert a == b
    assert "level=0.300000" in a
    # Beyond the fixed precision the parameters are different requests.
    assert make_key("dicom", "slice", SHA, {"level": 0.3}) != make_key("dicom", "slice", SHA, {"level": 0.31})


def test_int_and_float_are_distinct_but_bool_is_not_an_int() -> None:
    assert make_key("d", "op", SHA, {"x": 1}) != make_key("d", "op", SHA, {"x": 1.0})
    assert make_key("d", "op", SHA, {"x": True}) != make_key("d", "op", SHA, {"x": 1})


def test_identity_set_ignores_order() -> None:
    uids = ["1.2.3.4", "1.2.3.10", "1.2.3.5"]
    a = make_key("dicom", "volume", uids)
    b = make_key("dicom", "volume", list(reversed(uids)))
    c = make_key("dicom", "volume", tuple(sorted(uids)))
    assert a == b == c
    assert "/set-" in a
    assert make_key("dicom", "volume", uids[:2]) != a
    # A set of one is not the same key as the bare identity.
    assert make_key("dicom", "volume", [SHA]) != make_key("dicom", "volume", SHA)


@pytest.mark.parametrize("namespace", ["", "a/b", "a?b", "a&b", "a=b"])
def test_rejects_bad_namespace(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        make_key(namespace, "frame", SHA)


@pytest.mark.parametrize("operation", ["", "x/y", "x?y", "x&y", "x=y"])
def test_rejects_bad_operation(operation: str) -> None:
    with pytest.raises(ValueError, match="operation"):
        make_key("dicom", operation, SHA)


@pytest.mark.parametrize("identity", ["", "a/b", "a?b"])
def test_rejects_bad_identity(identity: str) -> None:
    with pytest.raises(ValueError, match="identity"):
        make_key("dicom", "frame", identity)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan]])
def test_rejects_non_finite_floats(value: object) -> None:
    with pytest.raises(ValueError, match="finite"):
        make_key("dicom", "frame", SHA, {"x": value})  # type: ignore[dict-item]


@pytest.mark.parametrize("value", [b"bytes", {"a": 1}, object(), {1, 2}])
def test_rejects_unsupported_parameter_types(value: object) -> None:
    with pytest.raises(TypeError, match="unsupported"):
        make_key("dicom", "frame", SHA, {"x": value})  # type: ignore[dict-item]
