"""The fast paths of the in-process ciphers: running CBC chains and cryptography's CMAC.

Each fast path must give exactly what the plain construction gives: CBC against a
fresh ``cryptography`` context per call, CMAC against the generic block-by-block
path (which the published vectors pin down too), in any call order, under threads,
and after a failed call.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso.crypto import AES, DES, TDES, BlockCipher, CipherError, cmac, mac_alg3
from cardperso.crypto.mac import _cmac_generic

from ._vectors import h, load

CMAC_VECTORS = load("crypto_cmac")["vectors"]
KEYS: list[tuple[type[AES] | type[TDES] | type[DES], bytes]] = [
    (AES, bytes(range(16))),
    (AES, bytes(range(24))),
    (AES, bytes(range(32))),
    (TDES, bytes(range(16))),
    (TDES, bytes(range(24))),
    (DES, bytes(range(8))),
]
KEY_IDS = ["aes128", "aes192", "aes256", "tdes2", "tdes3", "des"]


def _algo(maker: type, key: bytes) -> Any:
    if maker is AES:
        return algorithms.AES(key)
    if maker is DES:
        return TripleDES(key * 3)
    return TripleDES(key if len(key) == 24 else key + key[:8])


def _ref_cbc(maker: type, key: bytes, data: bytes, iv: bytes, decrypt: bool) -> bytes:
    c = Cipher(_algo(maker, key), modes.CBC(iv))
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


class Wrapped:
    """A BlockCipher that is not one of ours: cmac must take the generic path."""

    def __init__(self, inner: BlockCipher) -> None:
        self._inner = inner
        self.calls = 0

    @property
    def block_size(self) -> int:
        return self._inner.block_size

    @property
    def algorithm(self) -> str:
        return self._inner.algorithm

    @property
    def key_length(self) -> int:
        return self._inner.key_length

    def encrypt_ecb(self, data: bytes) -> bytes:
        self.calls += 1
        return self._inner.encrypt_ecb(data)

    def decrypt_ecb(self, data: bytes) -> bytes:
        return self._inner.decrypt_ecb(data)

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self.calls += 1
        return self._inner.encrypt_cbc(data, iv)

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        return self._inner.decrypt_cbc(data, iv)


def _make(algorithm: str, key: bytes) -> BlockCipher:
    return {"AES": AES, "TDES": TDES, "DES": DES}[algorithm](key)


# --- CMAC ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "v", CMAC_VECTORS, ids=[f"{v['algorithm']}-{v['name']}" for v in CMAC_VECTORS]
)
def test_generic_cmac_path_still_meets_the_vectors(v: dict[str, Any]) -> None:
    wrapped = Wrapped(_make(v["algorithm"], h(v["key"])))
    assert isinstance(wrapped, BlockCipher)
    assert cmac(wrapped, h(v["message"])) == h(v["tag"])
    assert wrapped.calls == 2  # E_K(0) for the subkeys, then the CBC pass


@pytest.mark.parametrize(("maker", "key"), KEYS, ids=KEY_IDS)
def test_fast_cmac_equals_generic_cmac_for_every_length(maker: type, key: bytes) -> None:
    cipher = maker(key)
    rng = random.Random(f"cmac {maker.__name__} {len(key)}")
    for n in range(0, 3 * cipher.block_size + 2):
        data = rng.randbytes(n)
        assert cmac(cipher, data) == _cmac_generic(cipher, data)
        # any bytes-like message, as the generic path took it
        assert cmac(cipher, bytearray(data)) == cmac(cipher, memoryview(data))  # type: ignore[arg-type]


@settings(max_examples=60)
@given(st.binary(max_size=200), st.sampled_from(range(len(KEYS))))
def test_fast_cmac_property(data: bytes, which: int) -> None:
    maker, key = KEYS[which]
    cipher = maker(key)
    assert cmac(cipher, data) == _cmac_generic(cipher, data)
    assert cmac(cipher, data) == _cmac_generic(maker(key), data)  # fresh and reused alike


def test_a_subclass_takes_the_generic_path() -> None:
    calls: list[str] = []

    class CountingAES(AES):
        __slots__ = ()

        def encrypt_ecb(self, data: bytes) -> bytes:
            calls.append("ecb")
            return super().encrypt_ecb(data)

    key = bytes(range(16))
    assert cmac(CountingAES(key), b"abc") == cmac(AES(key), b"abc")
    assert calls == ["ecb"]


def test_cmac_from_many_threads_on_one_key() -> None:
    cipher = AES(bytes(range(16)))
    msgs = [bytes([i]) * i for i in range(64)]
    want = [_cmac_generic(cipher, m) for m in msgs]
    bad: list[int] = []

    def worker() -> None:
        for _ in range(50):
            for i, m in enumerate(msgs):
                if cmac(cipher, m) != want[i]:
                    bad.append(i)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.parametrize("padding", [1, 2, 3])
def test_retail_mac_final_step_through_the_cbc_chain(padding: int) -> None:
    rng = random.Random(f"alg3 {padding}")
    for n in range(0, 40, 3):
        k1, k2, data = rng.randbytes(8), rng.randbytes(8), rng.randbytes(n)
        fast = mac_alg3(DES(k1), DES(k2), data, padding)
        assert fast == mac_alg3(Wrapped(DES(k1)), Wrapped(DES(k2)), data, padding)
        t1, t2 = TDES(k1 + k2), TDES(k2 + k1)
        assert mac_alg3(t1, t2, data, padding) == mac_alg3(Wrapped(t1), Wrapped(t2), data, padding)


# --- running CBC chains ------------------------------------------------------------


@settings(max_examples=40)
@given(
    st.sampled_from(range(len(KEYS))),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 6), st.booleans(), st.binary(min_size=16)),
        max_size=12,
    ),
)
def test_cbc_chains_equal_fresh_contexts_in_any_call_order(
    which: int, calls: list[tuple[bool, int, bool, bytes]]
) -> None:
    maker, key = KEYS[which]
    cipher = maker(key)
    bs = cipher.block_size
    for decrypt, blocks, zero_iv, seed in calls:
        rng = random.Random(seed)
        data = rng.randbytes(blocks * bs)
        iv = None if zero_iv else rng.randbytes(bs)
        ref = _ref_cbc(maker, key, data, iv or bytes(bs), decrypt)
        got = cipher.decrypt_cbc(data, iv) if decrypt else cipher.encrypt_cbc(data, iv)
        assert got == ref
        assert type(got) is bytes


@pytest.mark.parametrize(("maker", "key"), KEYS, ids=KEY_IDS)
def test_cbc_round_trip_and_interleaving_with_ecb(maker: type, key: bytes) -> None:
    cipher = maker(key)
    bs = cipher.block_size
    rng = random.Random("interleave")
    for n in range(0, 70):
        data = rng.randbytes(bs * (n % 9))
        iv = rng.randbytes(bs)
        ct = cipher.encrypt_cbc(data, iv)
        assert ct == _ref_cbc(maker, key, data, iv, False)
        ecb = Cipher(_algo(maker, key), modes.ECB()).encryptor()
        assert cipher.encrypt_ecb(data) == ecb.update(data)
        assert cipher.decrypt_cbc(ct, iv) == data
        assert cipher.decrypt_cbc(bytearray(ct), iv) == data
        assert cipher.encrypt_cbc(memoryview(data)) == _ref_cbc(maker, key, data, bytes(bs), False)


def test_cbc_checks_come_before_any_state_change() -> None:
    cipher = AES(bytes(16))
    data, iv = bytes(range(32)), bytes(range(16))
    want = _ref_cbc(AES, bytes(16), data, iv, False)
    with pytest.raises(CipherError):
        cipher.encrypt_cbc(data[:20], iv)
    with pytest.raises(CipherError):
        cipher.encrypt_cbc(data, iv[:8])
    with pytest.raises(CipherError):
        cipher.decrypt_cbc(data, b"")
    assert cipher.encrypt_cbc(b"", iv) == b"" == cipher.decrypt_cbc(b"", iv)
    with pytest.raises(CipherError):
        cipher.encrypt_cbc(b"", iv[:3])  # the IV is checked even with nothing to encrypt
    assert cipher.encrypt_cbc(data, iv) == want


def test_a_failed_chain_is_dropped_and_rebuilt() -> None:
    class Broken:
        def update(self, data: bytes) -> bytes:
            raise RuntimeError("context failure")

    cipher = TDES(bytes(range(16)))
    data, iv = bytes(range(24)), bytes(range(8))
    cipher.encrypt_cbc(data, iv)
    cipher.decrypt_cbc(data, iv)
    cipher._cbc_e = Broken()
    cipher._cbc_d = Broken()
    with pytest.raises(RuntimeError):
        cipher.encrypt_cbc(data, iv)
    with pytest.raises(RuntimeError):
        cipher.decrypt_cbc(data, iv)
    assert cipher._cbc_e is None and cipher._cbc_d is None
    assert cipher.encrypt_cbc(data, iv) == _ref_cbc(TDES, bytes(range(16)), data, iv, False)
    assert cipher.decrypt_cbc(data, iv) == _ref_cbc(TDES, bytes(range(16)), data, iv, True)


def test_cbc_chains_shared_by_threads() -> None:
    key = bytes(range(32))
    cipher = AES(key)
    bad: list[int] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        for _ in range(300):
            data, iv = rng.randbytes(16 * rng.randint(1, 5)), rng.randbytes(16)
            ct = cipher.encrypt_cbc(data, iv)
            if ct != _ref_cbc(AES, key, data, iv, False) or cipher.decrypt_cbc(ct, iv) != data:
                bad.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_repr_still_hides_the_key_after_use() -> None:
    key = bytes(range(16))
    cipher = AES(key)
    cipher.encrypt_cbc(bytes(16))
    cmac(cipher, b"x")
    assert key.hex() not in repr(cipher) and "redacted" in repr(cipher)
