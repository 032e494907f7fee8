"""GENERAL AUTHENTICATE for key agreement (docs/card-os.md §8.3): ECDH-protected loading.

The host half is written here from the specification, on the ``cryptography``
package and the independent secure-messaging host of ``sm_host`` - never on
``cardperso.securemsg`` - so a passing test shows the card agrees with an
implementation it shares no code with:

* Z = ECDH(host ephemeral key, card point), SEC 1 v2 §3.3.1;
* K_DK = AES-CMAC(0^16, Z) and SK.ENC / SK.MAC / K_KC = SP 800-108r1 counter-mode
  AES-CMAC under K_DK (``cryptography``'s ``KBKDFCMAC``), labels ``cardperso ECDH
  ENC`` / ``MAC`` / ``KC``, context host point || card point || nonce, 16 bytes;
* the card's tag = AES-CMAC(K_KC, "KC_1_V" || serial || card point || nonce ||
  host point), SP 800-56A r3 §5.9.1.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sm_host import (
    KD,
    PERSONALIZED,
    HostSession,
    aes_cmac,
    expect,
    kdf,
    open_session,
    parse_dos,
    standard_card,
    sw_of,
)

from cardperso.apdu import CommandAPDU
from cardperso.readers import VirtualReader, cos, exchange

SERIAL = bytes.fromhex("00000000000000C1")  # sm_host.standard_card's chip serial
EC_REF = 6
AGREE_ONLY = cos.USE_KEY_AGREEMENT
SIGN_ONLY = cos.USE_INT_AUTH


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _public(data: bytes) -> bytes:
    """The point of a GENERATE ASYMMETRIC KEY PAIR answer 7F49{86 point}."""
    assert data[:5] == b"\x7f\x49\x43\x86\x41" and len(data) == 70
    return data[5:]


def _generate(s: HostSession, r: VirtualReader, ref: int, usage: int) -> bytes:
    """GENERATE ASYMMETRIC KEY PAIR under SM; the card's public point."""
    return _public(s.expect(r, cos.generate_key_pair(ref, usage)))


def _session(card_point: bytes, host: ec.EllipticCurvePrivateKey, answer: bytes) -> HostSession:
    """Check the card's answer 7C{81 nonce, 82 tag}; the new host session."""
    (outer,) = parse_dos(answer)
    assert outer[0] == 0x7C
    inner = parse_dos(outer[1])
    assert [t for t, _, _ in inner] == [0x81, 0x82]
    nonce, tag = inner[0][1], inner[1][1]
    assert len(nonce) == 16 and len(tag) == 16
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), card_point)
    z = host.exchange(ec.ECDH(), public)
    kdk = aes_cmac(bytes(16), z)
    host_point = _point(host)
    ctx = host_point + card_point + nonce
    k_enc, k_mac, k_kc = (
        kdf(kdk, "AES", b"cardperso ECDH " + label, ctx, 16) for label in (b"ENC", b"MAC", b"KC")
    )
    assert tag == aes_cmac(k_kc, b"KC_1_V" + SERIAL + card_point + nonce + host_point)
    return HostSession("AES", k_enc, k_mac)


def _ready() -> tuple[VirtualReader, HostSession, bytes]:
    """The standard card (INITIALIZED), a KD session (key 1) and an agreement key
    ``EC_REF`` generated in it: (reader, session, the card's point)."""
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    return r, s, _generate(s, r, EC_REF, AGREE_ONLY)


def test_key_agreement_restarts_secure_messaging_under_the_agreed_keys() -> None:
    r, old, card_point = _ready()
    host = ec.generate_private_key(ec.SECP256R1())
    resp = old.send(r, cos.general_authenticate_ecdh(EC_REF, _point(host)))
    assert resp.sw == 0x9000  # the answer is protected by the session it was sent in
    new = _session(card_point, host, resp.data)
    # From now on the agreed keys protect the load: PUT PIN needs SM in INITIALIZED.
    new.expect(r, cos.put_pin(7, cos.format2("2580"), tries=3))
    assert new.ssc == 2
    expect(r, cos.verify(7, cos.format2("2580")))
    # The old session is gone: its MAC no longer verifies, and the card drops SM.
    assert exchange(r, old.wrap(cos.read_binary(0, 4, sfi=4))).sw == 0x6988
    assert sw_of(r, new.wrap(cos.read_binary(0, 4, sfi=4))) == 0x6882


def test_the_agreement_is_refused_outside_secure_messaging_6982() -> None:
    r, _, _ = _ready()
    host = ec.generate_private_key(ec.SECP256R1())
    assert sw_of(r, cos.general_authenticate_ecdh(EC_REF, _point(host))) == 0x6982


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: p[:-1] + bytes([p[-1] ^ 1]), id="off-curve"),
        pytest.param(lambda p: b"\x02" + p[1:33], id="compressed"),
        pytest.param(lambda p: p[:64], id="short"),
        pytest.param(lambda p: b"\x04" + bytes(64), id="zero"),
    ],
)
def test_a_point_not_on_the_curve_is_refused_6a80(mangle: Callable[[bytes], bytes]) -> None:
    r, s, _ = _ready()
    point = _point(ec.generate_private_key(ec.SECP256R1()))
    resp = s.send(r, cos.general_authenticate_ecdh(EC_REF, mangle(point)))
    assert resp.sw == 0x6A80 and resp.data == b""
    # a refused agreement leaves the session in force
    assert s.expect(r, cos.read_binary(0, 4, sfi=4)) == b"INIT"


def test_a_key_without_the_agreement_usage_6985_and_no_ec_key_6a88() -> None:
    r, s, _ = _ready()
    _generate(s, r, 7, SIGN_ONLY)
    point = _point(ec.generate_private_key(ec.SECP256R1()))
    assert s.send(r, cos.general_authenticate_ecdh(7, point)).sw == 0x6985
    assert s.send(r, cos.general_authenticate_ecdh(1, point)).sw == 0x6A88  # a symmetric key
    assert s.send(r, cos.general_authenticate_ecdh(9, point)).sw == 0x6A88


def test_malformed_commands() -> None:
    r, s, _ = _ready()
    point = _point(ec.generate_private_key(ec.SECP256R1()))
    no_le = CommandAPDU(0x00, 0x86, 0x00, EC_REF, cos.general_authenticate_ecdh(1, point)[5:-1])
    assert s.send(r, no_le.to_bytes()).sw == 0x6700
    two = b"\x7c\x45\x80\x41" + point + b"\x81\x00"
    assert s.send(r, CommandAPDU(0x00, 0x86, 0x00, EC_REF, two, 256).to_bytes()).sw == 0x6A80
    assert s.send(r, CommandAPDU(0x00, 0x86, 0x01, EC_REF, two, 256).to_bytes()).sw == 0x6A86


def test_a_tampered_key_confirmation_is_caught_by_the_host() -> None:
    r, old, card_point = _ready()
    host = ec.generate_private_key(ec.SECP256R1())
    resp = old.send(r, cos.general_authenticate_ecdh(EC_REF, _point(host)))
    forged = bytearray(resp.data)
    forged[-1] ^= 0x01
    with pytest.raises(AssertionError):
        _session(card_point, host, bytes(forged))
    # ... and a card that answers for another host key cannot pass either.
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AssertionError):
        _session(card_point, other, resp.data)


def test_after_personalization_the_agreement_opens_a_session_but_loads_nothing() -> None:
    _, r = standard_card(0x01)
    card_point = _public(expect(r, cos.generate_key_pair(EC_REF, AGREE_ONLY)))
    expect(r, cos.set_lifecycle(0x07))
    expect(r, cos.set_lifecycle(PERSONALIZED))
    s = open_session(r, 1, KD, "AES")
    assert _public(s.expect(r, cos.read_public_key(EC_REF))) == card_point
    host = ec.generate_private_key(ec.SECP256R1())
    answer = s.expect(r, cos.general_authenticate_ecdh(EC_REF, _point(host)))
    new = _session(card_point, host, answer)
    assert new.send(r, cos.put_pin(7, cos.format2("2580"), tries=3)).sw == 0x6985
    assert new.expect(r, cos.read_binary(0, 4, sfi=4)) == b"INIT"
