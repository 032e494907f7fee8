"""SecretBytes / SecretStr never show their value, compare in constant time, refuse pickling."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardperso.crypto import SecretBytes, SecretStr

# Values long enough that an accidental substring match is not a false alarm.
secret_bytes = st.binary(min_size=4, max_size=40)
pins = st.text(alphabet="0123456789", min_size=4, max_size=12)


def _renderings(obj: object) -> list[str]:
    return [
        repr(obj),
        str(obj),
        f"{obj}",
        f"{obj!r}",
        f"{obj!s}",
        f"{obj:>60}",
        "{}".format(obj),  # noqa: UP032 - str.format must redact too
        "%s %r" % (obj, obj),  # noqa: UP031 - the old operator must redact too
        repr([obj]),
        repr({"pin": obj}),
        repr((obj,)),
    ]


def _leaks_bytes(text: str, value: bytes) -> bool:
    return value.hex() in text.lower() or repr(value) in text or str(list(value)) in text


@given(secret_bytes)
def test_secret_bytes_never_renders_value(value: bytes) -> None:
    s = SecretBytes(value)
    for text in _renderings(s):
        assert "<redacted>" in text
        assert not _leaks_bytes(text, value)
    assert repr(s) == f"SecretBytes(<redacted>, {len(value)} bytes)"


@given(pins)
def test_secret_str_never_renders_value(pin: str) -> None:
    s = SecretStr(pin)
    for text in _renderings(s):
        assert "<redacted>" in text
        assert pin not in text
    assert repr(s) == f"SecretStr(<redacted>, {len(pin)} chars)"


def _raise_chain(secret: object) -> None:
    try:
        raise ValueError("PIN check failed", secret)
    except ValueError as inner:
        raise RuntimeError(f"verifying {secret}") from inner


@given(pins, secret_bytes)
def test_exception_chains_stay_redacted(pin: str, key: bytes) -> None:
    cases: list[tuple[object, Callable[[str], bool]]] = [
        (SecretStr(pin), lambda t: pin in t),
        (SecretBytes(key), lambda t: _leaks_bytes(t, key)),
    ]
    for secret, leaks in cases:
        with pytest.raises(RuntimeError) as info:
            _raise_chain(secret)
        text = "".join(traceback.format_exception(info.value))
        assert "<redacted>" in text
        assert not leaks(text)


def test_logging_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("cardperso.test").info(
            "pin=%s key=%r", SecretStr("4711"), SecretBytes(b"\x13\x37\xbe\xef")
        )
    assert "4711" not in caplog.text
    assert "1337beef" not in caplog.text.lower()
    assert caplog.text.count("<redacted>") == 2


def test_reveal_len_bool() -> None:
    s = SecretBytes(bytearray(b"\x01\x02\x03"))
    assert s.reveal() == b"\x01\x02\x03" and isinstance(s.reveal(), bytes)
    assert len(s) == 3 and s
    assert not SecretBytes(b"")
    p = SecretStr("1234")
    assert p.reveal() == "1234" and len(p) == 4 and p
    assert not SecretStr("")


def test_equality_is_by_value() -> None:
    assert SecretBytes(b"abcd") == SecretBytes(b"abcd")
    assert SecretBytes(b"abcd") != SecretBytes(b"abce")
    assert SecretBytes(b"abcd") == b"abcd"
    assert b"abcd" == SecretBytes(b"abcd")  # noqa: SIM300 - the reflected operand
    assert SecretBytes(b"abcd") != "abcd"
    assert SecretStr("1234") == SecretStr("1234")
    assert SecretStr("1234") != SecretStr("1235")
    assert SecretStr("1234") == "1234"
    assert SecretStr("1234") != SecretBytes(b"1234")
    assert SecretStr("ü1") == SecretStr("ü1")  # non-ASCII must not crash compare_digest


def test_equality_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[object, object]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert SecretBytes(b"k") == SecretBytes(b"k")
    assert SecretStr("1") == "1"
    assert len(calls) == 2


@pytest.mark.parametrize("secret", [SecretBytes(b"\x00\x11"), SecretStr("0000")])
def test_not_hashable(secret: object) -> None:
    with pytest.raises(TypeError):
        hash(secret)
    with pytest.raises(TypeError):
        {secret}  # noqa: B018


@pytest.mark.parametrize("secret", [SecretBytes(b"\x00\x11"), SecretStr("0000")])
def test_pickling_refused(secret: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(secret, protocol=protocol)


def test_copy_is_the_same_secret() -> None:
    s = SecretBytes(b"\x01\x02")
    assert copy.copy(s) is s
    assert copy.deepcopy({"k": s})["k"] is s


def test_no_instance_dict() -> None:
    assert not hasattr(SecretBytes(b"x"), "__dict__")
    assert not hasattr(SecretStr("1"), "__dict__")


def test_wrong_types_rejected() -> None:
    with pytest.raises(TypeError):
        SecretBytes("1234")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SecretStr(b"1234")  # type: ignore[arg-type]
