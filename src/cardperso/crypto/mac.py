"""Block-cipher MACs and the padding they need.

Three families live here, all written against :class:`BlockCipher` so the same code
runs over an in-process key or a security-module handle:

* ISO/IEC 9797-1:2011 padding methods 1, 2 and 3, and the strict removal of
  method 2 padding, which is also ISO/IEC 7816-4's '80 00..' padding.
* ISO/IEC 9797-1 MAC algorithm 1 (plain CBC-MAC) and MAC algorithm 3 (the
  ANSI X9.19 "retail MAC" when the cipher is single DES).
* CMAC (NIST SP 800-38B; ISO/IEC 9797-1 MAC algorithm 5) over any 64- or 128-bit
  block cipher; over this package's own in-process ciphers it runs as
  ``cryptography``'s CMAC (a few times faster than the generic block-by-block path).

Every MAC function returns a full block; truncation (e.g. to the 4 or 8 leading
bytes a card expects) is the caller's protocol decision.
"""

from __future__ import annotations

import hmac
from typing import cast

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher, CipherError, _Cipher

__all__ = [
    "cmac",
    "cmac_final_inputs",
    "mac_alg1",
    "mac_alg3",
    "pad_iso9797",
    "retail_mac",
    "unpad_m2",
    "verify_mac",
]

# SP 800-38B §5.3: the constant R_b for the subkey doubling, by block size in bytes.
_CMAC_RB = {8: 0x1B, 16: 0x87}

# Exactly these types (not subclasses, which may override the block operations)
# take cryptography's CMAC.
_IN_PROCESS: frozenset[type] = frozenset({AES, TDES, DES})


def _check_block_size(block_size: int) -> None:
    if block_size <= 0:
        raise CipherError(f"block size must be positive, not {block_size}")


def pad_iso9797(data: bytes, block_size: int, method: int) -> bytes:
    """Pad ``data`` by ISO/IEC 9797-1:2011 padding method 1, 2 or 3.

    Method 1 appends as few zero bytes as give a *positive* multiple of the block,
    so empty data becomes one zero block. Method 2 appends 0x80 and then method-1
    zeros (ISO/IEC 7816-4 padding). Method 3 zero-pads (possibly not at all) and
    prefixes one block holding the unpadded length in bits, big-endian, so that two
    messages differing only in trailing zeros no longer collide.
    """
    _check_block_size(block_size)
    data = bytes(data)
    if method == 1:
        fill = -len(data) % block_size
        if not data:
            fill = block_size
        return data + bytes(fill)
    if method == 2:
        body = data + b"\x80"
        return body + bytes(-len(body) % block_size)
    if method == 3:
        bits = len(data) * 8
        if bits >= 1 << (8 * block_size):
            raise CipherError("padding method 3: data too long for the length block")
        return bits.to_bytes(block_size, "big") + data + bytes(-len(data) % block_size)
    raise CipherError(f"ISO/IEC 9797-1 padding method must be 1, 2 or 3, not {method}")


def unpad_m2(data: bytes, block_size: int) -> bytes:
    """Strip ISO/IEC 9797-1 method 2 (= ISO/IEC 7816-4) padding, strictly.

    The input must be a positive whole number of blocks and its last block must
    end in 0x80 followed only by zeros. Anything else raises :class:`CipherError`,
    so a forged or mis-decrypted secure-messaging field is never half-accepted.
    """
    _check_block_size(block_size)
    if not data or len(data) % block_size:
        raise CipherError(
            f"padded data length {len(data)} is not a positive multiple of {block_size}"
        )
    end = len(data)
    floor = end - block_size
    i = end - 1
    while i >= floor and data[i] == 0x00:
        i -= 1
    if i < floor or data[i] != 0x80:
        raise CipherError("bad ISO/IEC 9797-1 method 2 padding")
    return bytes(data[:i])


def mac_alg1(cipher: BlockCipher, data: bytes, padding: int = 1) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: CBC with zero IV, output the last block.

    Initial transformation 1 and output transformation 1; with DES and method 1
    this is also the FIPS 113 / ANSI X9.9 data authentication algorithm.
    """
    bs = cipher.block_size
    return cipher.encrypt_cbc(pad_iso9797(data, bs, padding))[-bs:]


def mac_alg3(k1: BlockCipher, k2: BlockCipher, data: bytes, padding: int = 1) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, the ANSI X9.19 retail MAC.

    CBC-MAC under K1 over all blocks, then output transformation 3 on the last
    block: G = E_K1(D_K2(H_q)). With single-DES K1 and K2 this costs one DES per
    block plus two, yet the final block resists the exhaustive key search that
    breaks plain single-DES CBC-MAC.
    """
    bs = k1.block_size
    if k2.block_size != bs:
        raise CipherError("MAC algorithm 3: K1 and K2 must have the same block size")
    h = mac_alg1(k1, data, padding)
    g = k2.decrypt_ecb(h)
    if type(k1) in _IN_PROCESS:
        # One block under a zero IV: CBC is the bare permutation, and K1's CBC chain
        # already exists (built by the pass above), so no ECB context is built for it.
        return k1.encrypt_cbc(g)
    return k1.encrypt_ecb(g)


def retail_mac(key: bytes, data: bytes, padding: int = 1) -> bytes:
    """Retail MAC (ISO/IEC 9797-1 algorithm 3 with single DES) under a 16-byte K1||K2."""
    if len(key) != 16:
        raise CipherError(f"retail MAC key must be 16 bytes (K1||K2), not {len(key)}")
    return mac_alg3(DES(key[:8]), DES(key[8:]), data, padding)


def _double(block: bytes, rb: int) -> bytes:
    """Multiply by x in GF(2^n): shift left one bit, fold the carry with R_b (SP 800-38B §6.1)."""
    n = len(block) * 8
    v = int.from_bytes(block, "big") << 1
    if v >> n:
        v = (v ^ rb) & ((1 << n) - 1)
    return v.to_bytes(len(block), "big")


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def cmac(cipher: BlockCipher, data: bytes) -> bytes:
    """CMAC (NIST SP 800-38B §6.2; ISO/IEC 9797-1 MAC algorithm 5), full block.

    Subkeys come from L = E_K(0^b) by doubling with R_b = 0x87 for 128-bit blocks
    (AES) and 0x1B for 64-bit blocks (TDEA). A complete last block is masked with
    K1; an incomplete or empty one is padded with 10..0 and masked with K2, which
    is what makes CMAC safe for messages of varying length where CBC-MAC is not.

    An in-process :class:`~cardperso.crypto.ciphers.AES`, ``TDES`` or ``DES`` key
    goes to ``cryptography``'s CMAC over the same algorithm object; any other
    :class:`BlockCipher` (a security-module handle, a wrapper) takes the generic
    path below, which needs only its ECB and CBC encryption.
    """
    if type(cipher) in _IN_PROCESS:
        return cast(_Cipher, cipher)._cmac(data)
    native = getattr(cipher, "native_cmac", None)
    if native is not None:  # a security-module key with a CMAC mechanism of its own
        return cast(bytes, native(bytes(data)))
    return _cmac_generic(cipher, data)


def cmac_final_inputs(cipher: BlockCipher, messages: list[bytes], subkey_base: bytes) -> bytes:
    """For each message M, the block X with CMAC_K(M) = E_K(X), concatenated.

    X is the last block of M (completed with K1, or padded and masked with K2)
    XOR the CBC-MAC of the blocks before it (SP 800-38B §6.2 steps 5-6). With
    ``subkey_base`` = L = E_K(0^b) given, this needs only CBC encryption of the
    leading blocks, so a security module can then compute E_K(X1 || X2 ..) by a
    key *derivation* mechanism (``CKM_AES_ECB_ENCRYPT_DATA``): the MAC outputs
    become a new key inside the module and never exist outside it.
    """
    bs = cipher.block_size
    rb = _CMAC_RB.get(bs)
    if rb is None or len(subkey_base) != bs:
        raise CipherError("CMAC final inputs need a 64- or 128-bit block and L of one block")
    subkey1 = _double(subkey_base, rb)
    subkey2 = _double(subkey1, rb)
    out = []
    for data in messages:
        data = bytes(data)
        if data and len(data) % bs == 0:
            head, last = data[:-bs], _xor(data[-bs:], subkey1)
        else:
            cut = len(data) - len(data) % bs
            tail = data[cut:] + b"\x80"
            head, last = data[:cut], _xor(tail + bytes(bs - len(tail)), subkey2)
        chain = cipher.encrypt_cbc(head)[-bs:] if head else bytes(bs)
        out.append(_xor(last, chain))
    return b"".join(out)


def _cmac_generic(cipher: BlockCipher, data: bytes) -> bytes:
    """CMAC from the cipher's ECB and CBC encryption alone (SP 800-38B §6.2)."""
    bs = cipher.block_size
    rb = _CMAC_RB.get(bs)
    if rb is None:
        raise CipherError(f"CMAC is defined for 64- and 128-bit blocks, not {bs * 8}-bit")
    subkey1 = _double(cipher.encrypt_ecb(bytes(bs)), rb)
    data = bytes(data)
    if data and len(data) % bs == 0:
        head, last = data[:-bs], _xor(data[-bs:], subkey1)
    else:
        subkey2 = _double(subkey1, rb)
        cut = len(data) - len(data) % bs
        tail = data[cut:] + b"\x80"
        head, last = data[:cut], _xor(tail + bytes(bs - len(tail)), subkey2)
    return cipher.encrypt_cbc(head + last)[-bs:]


def verify_mac(expected: bytes, actual: bytes) -> bool:
    """Compare two MACs in constant time, so a timing side channel cannot guess one."""
    return hmac.compare_digest(bytes(expected), bytes(actual))
