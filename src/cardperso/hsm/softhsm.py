"""A throwaway SoftHSM2 token in a private directory (tests, demos, benchmarks).

SoftHSM2 finds its tokens through the file named by ``SOFTHSM2_CONF``, read once
when the library loads; :func:`init_token` writes such a file (``directories.
tokendir`` in the given directory, ``objectstore.backend = file``), sets the
variable, and initializes one token with ``softhsm2-util --init-token --free``.
The token lands in a random slot: the backend finds it by its label. Call it
before the first :class:`~cardperso.hsm.pkcs11.Pkcs11Hsm` of the process opens
(the library is loaded, and reads the variable, once per process).

The PINs go to ``softhsm2-util`` on its command line, where other local users can
read them while it runs (it reads PINs from a terminal only, not from a pipe). That
is acceptable for the throwaway tokens this module makes, whose PINs are random and
die with the directory; a production token is initialized with the token's own
tools by its security officers, never through this module.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pkcs11

from cardperso.crypto.secret import SecretStr
from cardperso.errors import HsmError
from cardperso.hsm.pkcs11 import Pkcs11Location, open_session

__all__ = [
    "MODULE_CANDIDATES",
    "SoftHsmToken",
    "SoftHsmUnavailable",
    "find_module",
    "init_token",
    "wipe_token",
]

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
CONF_ENV = "SOFTHSM2_CONF"


class SoftHsmUnavailable(HsmError):
    """SoftHSM2 (the library or softhsm2-util) is not installed, or init failed."""

    def __init__(self, message: str) -> None:
        super().__init__("softhsm", message)


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialized token: where it lives and how to log in."""

    directory: Path
    conf: Path
    module: str
    label: str
    pin: SecretStr
    so_pin: SecretStr

    @property
    def location(self) -> Pkcs11Location:
        return Pkcs11Location(self.module, self.label)

    @property
    def url(self) -> str:
        return f"pkcs11:{self.module}?token={self.label}"


def find_module() -> str | None:
    """The SoftHSM2 PKCS#11 library on this machine, or None."""
    return next((m for m in MODULE_CANDIDATES if Path(m).is_file()), None)


def init_token(
    directory: Path | str,
    *,
    label: str = "cardperso",
    pin: SecretStr | None = None,
    so_pin: SecretStr | None = None,
    set_env: bool = True,
) -> SoftHsmToken:
    """Write a SoftHSM2 configuration in ``directory`` and initialize one token there.

    PINs default to fresh random ones. With ``set_env`` the process's
    ``SOFTHSM2_CONF`` points at the new configuration.
    """
    module = find_module()
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        raise SoftHsmUnavailable("SoftHSM2 is not installed (libsofthsm2.so, softhsm2-util)")
    root = Path(directory)
    tokens = root / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    pin = pin or SecretStr(secrets.token_hex(8))
    so_pin = so_pin or SecretStr(secrets.token_hex(8))
    env = {**os.environ, CONF_ENV: str(conf)}
    cmd = [util, "--init-token", "--free", "--label", label]
    cmd += ["--so-pin", so_pin.reveal(), "--pin", pin.reveal()]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SoftHsmUnavailable(f"softhsm2-util --init-token failed (exit {done.returncode})")
    if set_env:
        os.environ[CONF_ENV] = str(conf)
    return SoftHsmToken(root, conf, module, label, pin, so_pin)


def wipe_token(token: SoftHsmToken) -> int:
    """Destroy every object in the token (a fresh start between tests); how many."""
    session = open_session(token.location, token.pin)
    try:
        objects = list(session.get_objects({pkcs11.Attribute.TOKEN: True}))
        for obj in objects:
            obj.destroy()
        return len(objects)
    finally:
        session.close()
