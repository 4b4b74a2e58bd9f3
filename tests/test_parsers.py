"""Property and example tests of the digest, name, tag, byte-range and Link header parsers."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from docket.api.links import next_link, parse_links
from docket.api.ranges import RangeNotSatisfiable, parse_range, parse_upload_range
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.oci.reference import is_valid_tag, parse_reference, validate_repository

PROPERTY = settings(max_examples=200, deadline=None)

HEX = "0123456789abcdef"
ENCODED_LENGTHS = {"sha256": 64, "sha512": 128}

# The grammars as written in the OCI specs, matched with re.fullmatch so that no
# trailing newline or other leftover character is tolerated.
SUPPORTED_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def valid_digests() -> st.SearchStrategy[str]:
    def with_encoded(algorithm: str) -> st.SearchStrategy[str]:
        length = ENCODED_LENGTHS[algorithm]
        return st.text(HEX, min_size=length, max_size=length).map(lambda encoded: f"{algorithm}:{encoded}")

    return st.sampled_from(sorted(ENCODED_LENGTHS)).flatmap(with_encoded)


@st.composite
def mutated_digests(draw: st.DrawFn) -> str:
    """A valid digest with one character inserted, removed or replaced."""
    text = draw(valid_digests())
    position = draw(st.integers(0, len(text)))
    character = draw(st.sampled_from(list(":\n \t+._-=AFgz0")) | st.characters(codec="utf-8"))
    operation = draw(st.sampled_from(["insert", "remove", "replace"]))
    if operation == "insert":
        return text[:position] + character + text[position:]
    if operation == "remove":
        return text[:position] + text[position + 1 :]
    return text[:position] + character + text[position + 1 :]


def name_components() -> st.SearchStrategy[str]:
    alphanumeric = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
    separator = st.sampled_from([".", "_", "__"]) | st.integers(1, 3).map(lambda count: "-" * count)
    rest = st.lists(st.tuples(separator, alphanumeric), max_size=3)
    return st.builds(lambda head, tail: head + "".join(sep + part for sep, part in tail), alphanumeric, rest)


def repository_names() -> st.SearchStrategy[str]:
    return st.lists(name_components(), min_size=1, max_size=5).map("/".join)


def name_like_text() -> st.SearchStrategy[str]:
    """Text biased toward the characters of the name grammar, so both outcomes occur."""
    return st.text(st.sampled_from(list("ab09._-/A \n")), max_size=20) | st.text(max_size=20)


def registry_error(call: Callable[[], object]) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        call()
    return info.value


# Digests


@PROPERTY
@given(valid_digests())
def test_digest_round_trip(text: str) -> None:
    assert str(Digest.parse(text)) == text


@PROPERTY
@given(st.text() | mutated_digests())
@example("sha256:" + "a" * 64 + "\n")
def test_digest_arbitrary_text(text: str) -> None:
    if SUPPORTED_DIGEST.fullmatch(text):
        assert str(Digest.parse(text)) == text
        return
    error = registry_error(lambda: Digest.parse(text))
    assert error.code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("md5:" + "a" * 32, id="md5"),
        pytest.param("sha384:" + "a" * 96, id="sha384"),
        pytest.param("blake3:" + "a" * 64, id="blake3"),
        pytest.param("sha256+b64:" + "a" * 64, id="algorithm-with-separator"),
    ],
)
def test_digest_unsupported_algorithm(text: str) -> None:
    error = registry_error(lambda: Digest.parse(text))
    assert error.code is ErrorCode.DIGEST_INVALID
    assert "unsupported digest algorithm" in error.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("sha256:" + "a" * 63, id="sha256-short"),
        pytest.param("sha256:" + "a" * 65, id="sha256-long"),
        pytest.param("sha256:" + "a" * 128, id="sha256-with-sha512-length"),
        pytest.param("sha512:" + "a" * 64, id="sha512-with-sha256-length"),
        pytest.param("sha512:" + "a" * 127, id="sha512-short"),
        pytest.param("sha256:" + "A" * 64, id="uppercase-hex"),
        pytest.param("sha256:" + "g" * 64, id="not-hex"),
        pytest.param("sha256:", id="empty-encoded"),
    ],
)
def test_digest_wrong_encoded(text: str) -> None:
    error = registry_error(lambda: Digest.parse(text))
    assert error.code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("SHA256:" + "a" * 64, id="uppercase-algorithm"),
        pytest.param(":" + "a" * 64, id="no-algorithm"),
        pytest.param("a" * 64, id="no-colon"),
        pytest.param(" sha256:" + "a" * 64, id="leading-space"),
        pytest.param("sha256:" + "a" * 64 + " ", id="trailing-space"),
        pytest.param("sha256:" + "a" * 64 + "\n", id="trailing-newline"),
        pytest.param("sha256::" + "a" * 64, id="double-colon"),
    ],
)
def test_digest_malformed(text: str) -> None:
    error = registry_error(lambda: Digest.parse(text))
    assert error.code is ErrorCode.DIGEST_INVALID


# Repository names


@PROPERTY
@given(repository_names())
def test_name_generated_valid(name: str) -> None:
    assert validate_repository(name) == name


@PROPERTY
@given(name_like_text())
@example("a\n")
def test_name_arbitrary_text(text: str) -> None:
    if SPEC_NAME.fullmatch(text) and len(text) <= MAX_NAME_LENGTH:
        assert validate_repository(text) == text
        return
    error = registry_error(lambda: validate_repository(text))
    assert error.code is ErrorCode.NAME_INVALID


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "a/b/c",
        "library/ubuntu",
        "a.b_c__d-e---f/g0",
        "a" * MAX_NAME_LENGTH,
        "a/" * 127 + "a",
    ],
)
def test_name_valid_examples(name: str) -> None:
    assert validate_repository(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a/../b", id="dot-dot"),
        pytest.param("a/./b", id="dot"),
        pytest.param("a//b", id="double-slash"),
        pytest.param("/a", id="leading-slash"),
        pytest.param("a/", id="trailing-slash"),
        pytest.param("A", id="uppercase"),
        pytest.param("library/Ubuntu", id="uppercase-component"),
        pytest.param("-a", id="leading-dash"),
        pytest.param("a-", id="trailing-dash"),
        pytest.param("a..b", id="double-dot"),
        pytest.param("a___b", id="triple-underscore"),
        pytest.param("a._b", id="mixed-separators"),
        pytest.param("a b", id="space"),
        pytest.param("a:b", id="colon"),
        pytest.param("a\n", id="trailing-newline"),
        pytest.param("a" * (MAX_NAME_LENGTH + 1), id="too-long"),
        pytest.param("a/" * 127 + "ab", id="too-long-with-slashes"),
    ],
)
def test_name_invalid_examples(name: str) -> None:
    error = registry_error(lambda: validate_repository(name))
    assert error.code is ErrorCode.NAME_INVALID


# Tags and manifest references


@PROPERTY
@given(st.from_regex(SPEC_TAG, fullmatch=True))
def test_reference_generated_tag(tag: str) -> None:
    assert is_valid_tag(tag)
    assert parse_reference(tag) == tag
    assert parse_reference(tag, for_push=True) == tag


@PROPERTY
@given(st.text(max_size=140).filter(lambda text: ":" not in text))
@example("latest\n")
def test_reference_arbitrary_text(text: str) -> None:
    if SPEC_TAG.fullmatch(text):
        assert parse_reference(text) == text
        return
    read_error = registry_error(lambda: parse_reference(text))
    push_error = registry_error(lambda: parse_reference(text, for_push=True))
    assert read_error.code is ErrorCode.MANIFEST_UNKNOWN
    assert push_error.code is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("", id="empty"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-rc1", id="leading-dash"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("v1 beta", id="space"),
        pytest.param("v1/beta", id="slash"),
        pytest.param("v1+build", id="plus"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("latest\n", id="trailing-newline"),
    ],
)
def test_reference_invalid_tag(tag: str) -> None:
    assert not is_valid_tag(tag)
    read_error = registry_error(lambda: parse_reference(tag))
    push_error = registry_error(lambda: parse_reference(tag, for_push=True))
    assert read_error.code is ErrorCode.MANIFEST_UNKNOWN
    assert push_error.code is ErrorCode.MANIFEST_INVALID


def test_reference_longest_tag() -> None:
    tag = "_" + "a" * 127
    assert parse_reference(tag) == tag


@PROPERTY
@given(valid_digests())
def test_reference_digest(text: str) -> None:
    assert parse_reference(text) == Digest.parse(text)


@pytest.mark.parametrize("reference", ["sha256:abc", "latest:1", "md5:" + "a" * 32])
def test_reference_bad_digest(reference: str) -> None:
    error = registry_error(lambda: parse_reference(reference, for_push=True))
    assert error.code is ErrorCode.DIGEST_INVALID


# Range request header (RFC 9110, section 14)


UNSATISFIABLE = "unsatisfiable"


def expected_range(first: int | None, last: int | None, size: int) -> tuple[int, int] | str | None:
    """Resolve one syntactically valid range-spec by RFC 9110, section 14.1.

    Returns (start, end) inclusive, None to send the whole representation, or
    UNSATISFIABLE. A reversed int-range (last < first) is invalid, and the RFC lets
    a server answer 416 for it, which is the choice Docket makes.
    """
    if first is None:
        assert last is not None
        if last == 0:
            return UNSATISFIABLE
        if size == 0:
            # Satisfiable by the RFC, but there is no byte to put in a 206 response.
            return None
        return max(size - last, 0), size - 1
    if last is not None and last < first:
        return UNSATISFIABLE
    if first >= size:
        return UNSATISFIABLE
    end = size - 1 if last is None else min(last, size - 1)
    return first, end


def resolve_range(header: str, size: int) -> tuple[int, int] | str | None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable as error:
        assert error.size == size
        assert error.content_range() == f"bytes */{size}"
        return UNSATISFIABLE
    if result is None:
        return None
    return result.start, result.end


@st.composite
def single_ranges(draw: st.DrawFn, min_size: int = 0) -> tuple[str, int | None, int | None, int]:
    """A size and a syntactically valid single range-spec, with positions near that size."""
    size = draw(st.integers(min_size, 10_000) | st.integers(min_size, 2**63))
    position = st.integers(0, size + 3) | st.integers(0, 2**64)
    form = draw(st.sampled_from(["int-range", "open-range", "suffix-range"]))
    first = None if form == "suffix-range" else draw(position)
    last = None if form == "open-range" else draw(position)
    unit = draw(st.sampled_from(["bytes", "Bytes", "BYTES"]))
    spec = f"{'' if first is None else first}-{'' if last is None else last}"
    return f"{unit}={spec}", first, last, size


@PROPERTY
@given(single_ranges(min_size=1))
def test_range_matches_rfc(case: tuple[str, int | None, int | None, int]) -> None:
    header, first, last, size = case
    result = resolve_range(header, size)
    assert result == expected_range(first, last, size)
    if isinstance(result, tuple):
        start, end = result
        assert 0 <= start <= end < size


@PROPERTY
@given(single_ranges())
def test_range_byte_range_fields(case: tuple[str, int | None, int | None, int]) -> None:
    header, _first, _last, size = case
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if result is None:
        return
    assert result.size == size
    assert result.length == result.end - result.start + 1
    assert result.content_range() == f"bytes {result.start}-{result.end}/{size}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("bytes=-1", None, id="suffix"),
        pytest.param("bytes=-0", UNSATISFIABLE, id="zero-suffix"),
        pytest.param("bytes=0-", UNSATISFIABLE, id="open-range"),
        pytest.param("bytes=0-0", UNSATISFIABLE, id="int-range"),
    ],
)
def test_range_empty_representation(header: str, expected: str | None) -> None:
    # RFC 9110, section 14.1.2: for a zero-length representation the only satisfiable
    # range-spec is a suffix-range with a non-zero length. No 206 can carry zero bytes,
    # and section 14.2 lets a server ignore Range for an empty representation, so the
    # expected result is the whole (empty) representation.
    assert resolve_range(header, 0) == expected


def test_range_examples() -> None:
    # Examples from RFC 9110, section 14.1.2, for a representation of 10000 bytes.
    assert resolve_range("bytes=0-499", 10000) == (0, 499)
    assert resolve_range("bytes=500-999", 10000) == (500, 999)
    assert resolve_range("bytes=-500", 10000) == (9500, 9999)
    assert resolve_range("bytes=9500-", 10000) == (9500, 9999)
    assert resolve_range("bytes=0-0", 10000) == (0, 0)
    assert resolve_range("bytes=-1", 10000) == (9999, 9999)


def test_range_reversed_is_unsatisfiable() -> None:
    assert resolve_range("bytes=500-0", 1000) == UNSATISFIABLE


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="absent"),
        pytest.param("bytes=0-1,4-5", id="two-ranges"),
        pytest.param("bytes=0-1, 4-", id="two-ranges-space"),
        pytest.param("bytes=-1,-2", id="two-suffixes"),
        pytest.param("items=0-5", id="other-unit"),
        pytest.param("none", id="no-equals"),
        pytest.param("bytes=", id="empty-set"),
        pytest.param("bytes=-", id="dash-only"),
        pytest.param("bytes=a-b", id="letters"),
        pytest.param("bytes=1.5-2", id="decimal"),
        pytest.param("bytes=+1-2", id="plus-sign"),
        pytest.param("bytes=\u0661-\u0662", id="arabic-indic-digits"),
    ],
)
def test_range_ignored(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("bytes=" + "9" * 5000 + "-", UNSATISFIABLE, id="huge-first"),
        pytest.param("bytes=0-" + "9" * 5000, (0, 99), id="huge-last"),
        pytest.param("bytes=-" + "9" * 5000, (0, 99), id="huge-suffix"),
    ],
)
def test_range_huge_numbers(header: str, expected: tuple[int, int] | str) -> None:
    # RFC 9110, section 14.1.2: recipients must expect large decimal numerals and
    # must not fail while converting them.
    assert resolve_range(header, 100) == expected


def range_like_text() -> st.SearchStrategy[str]:
    return st.text() | st.builds(
        lambda unit, spec: f"{unit}={spec}",
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.text(st.sampled_from(list("0123456789-, \t")), max_size=12),
    )


@PROPERTY
@given(range_like_text(), st.integers(0, 10_000))
def test_range_arbitrary_text(header: str, size: int) -> None:
    result = resolve_range(header, size)
    if isinstance(result, tuple):
        start, end = result
        assert 0 <= start <= end < size


# Upload Content-Range header


@st.composite
def upload_ranges(draw: st.DrawFn) -> tuple[str, int, int]:
    start = draw(st.integers(0, 2**64))
    end = draw(st.integers(start, start + 2**32))
    form = draw(st.sampled_from(["{s}-{e}", "bytes {s}-{e}/{t}", "bytes {s}-{e}/*", "bytes={s}-{e}"]))
    return form.format(s=start, e=end, t=end + 1), start, end


@PROPERTY
@given(upload_ranges())
def test_upload_range_generated(case: tuple[str, int, int]) -> None:
    header, start, end = case
    assert parse_upload_range(header) == (start, end)


@PROPERTY
@given(st.integers(1, 2**64), st.integers(0, 2**64))
def test_upload_range_reversed(start: int, shortfall: int) -> None:
    end = max(start - 1 - shortfall, 0)
    assert parse_upload_range(f"{start}-{end}") is None


@pytest.mark.parametrize("header", ["", "-", "0-", "-5", "a-b", "0-5/", "bytes 0-5/x", "items 0-5", "0-1,2-3"])
def test_upload_range_malformed(header: str) -> None:
    assert parse_upload_range(header) is None


@PROPERTY
@given(st.text() | st.text(st.sampled_from(list("0123456789-/* bytes=")), max_size=16))
@example("0-" + "9" * 5000)
def test_upload_range_arbitrary_text(header: str) -> None:
    result = parse_upload_range(header)
    if result is not None:
        start, end = result
        assert 0 <= start <= end


# Link header (RFC 8288)


def link_paths() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just("/v2/_catalog"),
        repository_names().map(lambda name: f"/v2/{name}/tags/list"),
        st.tuples(repository_names(), valid_digests()).map(lambda pair: f"/v2/{pair[0]}/referrers/{pair[1]}"),
    )


def link_params() -> st.SearchStrategy[dict[str, str | int]]:
    text = st.text(st.characters(codec="utf-8"), max_size=12)
    value = st.one_of(text, st.integers(0, 10**9))
    return st.dictionaries(st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), value, max_size=4)


@PROPERTY
@given(link_paths(), link_params())
def test_links_round_trip(path: str, params: dict[str, str | int]) -> None:
    target = parse_links(next_link(path, params))["next"]
    parts = urlsplit(target)
    assert parts.path == path
    assert parse_qsl(parts.query, keep_blank_values=True) == [(key, str(value)) for key, value in params.items()]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            '</v2/a/tags/list?n=2&last=b>; rel="next", </v2/a/tags/list?n=2>; rel="first"',
            {"next": "/v2/a/tags/list?n=2&last=b", "first": "/v2/a/tags/list?n=2"},
            id="two-links",
        ),
        pytest.param("</p?n=1>; rel=next", {"next": "/p?n=1"}, id="unquoted"),
        pytest.param('</p>; rel="next last"', {"next": "/p", "last": "/p"}, id="two-relations"),
        pytest.param('</p>; REL="Next"', {"next": "/p"}, id="case-insensitive"),
        pytest.param('</p> ;rel = "next" ', {"next": "/p"}, id="whitespace"),
        pytest.param('</a>; title="x", </b>; rel="next"', {"next": "/b"}, id="link-without-rel"),
        pytest.param('</a>; title="a, b; rel=prev"; rel="next"', {"next": "/a"}, id="separators-in-quotes"),
        pytest.param("</a>; type=text/plain; rel=next, </b>; rel=prev", {"next": "/a", "prev": "/b"}, id="mixed"),
        pytest.param(
            '<https://registry.example/v2/_catalog?n=5&last=x>; rel="next"',
            {"next": "https://registry.example/v2/_catalog?n=5&last=x"},
            id="absolute-uri",
        ),
        pytest.param('</a>; title="say \\"hi\\""; rel="next"', {"next": "/a"}, id="escaped-quote"),
        pytest.param('</a>; crossorigin; rel="next"', {"next": "/a"}, id="param-without-value"),
        pytest.param("", {}, id="empty"),
        pytest.param('<unterminated; rel="next"', {}, id="unterminated-uri"),
    ],
)
def test_links_headers(header: str, expected: dict[str, str]) -> None:
    assert parse_links(header) == expected


@PROPERTY
@given(st.text() | st.text(st.sampled_from(list('<>;=", \t/relnxt\\')), max_size=40))
def test_links_arbitrary_text(header: str) -> None:
    links = parse_links(header)
    for relation, target in links.items():
        assert relation == relation.lower()
        assert f"<{target}>" in header
