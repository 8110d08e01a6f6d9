"""Accept headers as the gateway reads them: parsed once per distinct header, each request its own list."""

from __future__ import annotations

import pytest

from voxelgate.dicomweb.errors import HttpError
from voxelgate.dicomweb.negotiation import MediaRange, parse_accept

FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*, image/jpeg;q=0.5, */*;q=0'


def test_a_header_parsed_again_gives_the_same_ranges_in_a_list_of_its_own() -> None:
    first = parse_accept(FRAMES)
    assert [(r.media_type, r.part_type, r.transfer_syntax, r.q) for r in first] == [
        ("multipart/related", "application/octet-stream", "*", 1.0),
        ("image/jpeg", None, None, 0.5),
    ]
    first.append(MediaRange("text/plain"))  # a caller's list is its own
    assert parse_accept(FRAMES) == first[:2]
    assert parse_accept(None) == parse_accept("  ") == [MediaRange("*/*")]


@pytest.mark.parametrize("header", ["text", "image/png;q=high"])
def test_a_malformed_header_is_refused_every_time(header: str) -> None:
    for _ in range(2):  # an error is not remembered as an answer
        with pytest.raises(HttpError) as caught:
            parse_accept(header)
        assert caught.value.status == 400
