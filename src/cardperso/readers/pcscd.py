"""A private pcscd with vpcd reader slots: a PC/SC rig for tests, demos and ``card serve``.

Each rig is independent of every other pcscd on the machine (parallel test workers,
other sessions, a system pcscd):

- **its own socket.** pcscd 1.9 reads no socket path from the environment (only the
  client library honours ``PCSCLITE_CSOCK_NAME``), but it accepts a listening socket
  from its parent the way systemd socket activation passes one (``LISTEN_FDS=1``,
  ``LISTEN_PID``, the socket as descriptor 3; ``sd_listen_fds(3)``). The rig binds a
  Unix socket in its own temporary folder and hands it over; clients find it through
  ``PCSCLITE_CSOCK_NAME`` (:attr:`PcscdRig.env`, :meth:`PcscdRig.use_here`). Left
  shared: pcscd still writes and, on exit, deletes ``/run/pcscd/pcscd.pid``, which
  nothing here reads.
- **its own reader.conf.d** (``pcscd -c DIR``): one entry per two slots (vpcd 3.3 gives
  each entry two slots, "NAME 00 00" on the entry's port and "NAME 00 01" on the next
  one), each with its **own copy** of ``libifdvpcd.so`` (entries sharing one library
  object clobber each other's state) and its own free pair of TCP ports.
- **its own process,** stopped by its PID; where util-linux's ``setpriv`` is present
  pcscd also gets SIGTERM if the process (strictly: the thread) that started it dies,
  so a killed test worker leaves no pcscd behind.

pcscd serves at most 16 readers (``PCSCLITE_MAX_READERS_CONTEXTS``), so a rig has at
most 16 slots. Readers are found by the FRIENDLYNAME the rig gives each entry, never by
index (pcscd lists them in directory order).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cardperso.errors import ConfigError

__all__ = [
    "MAX_READERS",
    "PCSCD",
    "SOCKET_ENV",
    "VPCD_DRIVER",
    "PcscdRig",
    "RigSlot",
    "rig_available",
]

PCSCD = "/usr/sbin/pcscd"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
SETPRIV = "/usr/bin/setpriv"
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
MAX_READERS = 16

# The socket is handed over on stdin and moved to descriptor 3; $$ is the shell's PID,
# which exec keeps, so LISTEN_PID names pcscd itself.
_LAUNCH = 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'


def rig_available() -> str | None:
    """None when pcscd and the vpcd driver are installed, else what is missing."""
    missing = [str(p) for p in (Path(PCSCD), VPCD_DRIVER) if not p.exists()]
    return ", ".join(missing) + " not found" if missing else None


@dataclass(frozen=True)
class RigSlot:
    """One reader slot: the PC/SC reader name clients use, the TCP port the card side
    connects to."""

    reader: str
    port: int


class PcscdRig:
    """A private pcscd with ``slots`` vpcd reader slots (see the module notes).

    ``debug`` runs pcscd with ``--debug --apdu``: its log (:attr:`log`) then holds every
    APDU in clear, keys in unprotected commands included: for diagnosing test cards
    only."""

    def __init__(self, slots: int, *, label: str | None = None, debug: bool = False) -> None:
        if not 1 <= slots <= MAX_READERS:
            raise ConfigError(f"a pcscd rig has 1..{MAX_READERS} slots, not {slots}")
        self.count = slots
        self.label = label or f"cardperso-{secrets.token_hex(3)}"
        self.debug = debug
        self.slots: list[RigSlot] = []
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- life cycle -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def socket_path(self) -> Path:
        if self.dir is None:
            raise ConfigError("the pcscd rig is not started")
        return self.dir / "pcscd.comm"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a PC/SC client process (opensc-tool, a second Python) to use
        this rig's pcscd."""
        return {**os.environ, SOCKET_ENV: str(self.socket_path)}

    @property
    def log(self) -> str:
        """pcscd's output so far (errors only unless ``debug``)."""
        if self.dir is None or not (self.dir / "pcscd.log").exists():
            return ""
        return (self.dir / "pcscd.log").read_text(errors="replace")

    def start(self, *, timeout: float = 10.0, attempts: int = 3) -> PcscdRig:
        """Start pcscd and wait until every slot's reader is listed. Ports are chosen
        free just before; if another process takes one first, the rig starts again with
        new ports (``attempts`` times)."""
        missing = rig_available()
        if missing:
            raise ConfigError(f"cannot start a pcscd rig: {missing}")
        last = ""
        for _ in range(attempts):
            try:
                self._launch()
                self._wait_ready(timeout)
                return self
            except ConfigError as e:
                last = str(e)
                self.stop()
            except BaseException:  # no pcscd or folder left behind, whatever stopped us
                self.stop()
                raise
        raise ConfigError(f"pcscd rig did not come up: {last}")

    def stop(self) -> None:
        """Stop pcscd (SIGTERM to its PID, then SIGKILL) and delete the rig's folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.slots = []

    def use_here(self) -> None:
        """Point this process's PC/SC client library at the rig. The library reads the
        variable once, at its first call: do this before any PC/SC call in the process
        (one process talks to one pcscd)."""
        os.environ[SOCKET_ENV] = str(self.socket_path)

    def __enter__(self) -> PcscdRig:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PcscdRig({self.label!r}, slots={self.count}, pid={self.pid})"

    # -- internals --------------------------------------------------------------------

    def _launch(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cardperso-pcscd-"))
        conf = self.dir / "reader.conf.d"
        conf.mkdir()
        self.slots = []
        for entry in range((self.count + 1) // 2):
            port = _free_port_pair()
            lib = self.dir / f"libifdvpcd-{entry}.so"
            shutil.copyfile(VPCD_DRIVER, lib)
            friendly = f"{self.label} {entry}"
            (conf / f"slot{entry:02d}").write_text(
                f'FRIENDLYNAME "{friendly}"\n'
                f"DEVICENAME /dev/null:0x{port:04X}\n"
                f"LIBPATH {lib}\n"
                f"CHANNELID 0x{port:04X}\n"
            )
            for k in range(2):
                if len(self.slots) < self.count:
                    self.slots.append(RigSlot(f"{friendly} 00 {k:02d}", port + k))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(64)
            args = [PCSCD, "--foreground", "-c", str(conf)]
            if Path(SETPRIV).exists():
                args = [SETPRIV, "--pdeathsig", "TERM", "--", *args]
            if self.debug:
                args += ["--debug", "--apdu"]
            log = (self.dir / "pcscd.log").open("wb")
            with log:
                self._proc = subprocess.Popen(  # noqa: S603 - fixed program, our own paths
                    ["/bin/sh", "-c", _LAUNCH, "sh", *args],
                    stdin=listener.fileno(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in a terminal goes to us, not pcscd
                )
        finally:
            listener.close()

    def _wait_ready(self, timeout: float) -> None:
        """Wait until pcscd lists every slot's reader, asking in a child process so this
        process's client library is not yet tied to any socket."""
        script = (
            "import sys\n"
            "from smartcard import scard as S\n"
            "hr, ctx = S.SCardEstablishContext(S.SCARD_SCOPE_USER)\n"
            "if hr: sys.exit(3)\n"
            "hr, names = S.SCardListReaders(ctx, [])\n"
            "S.SCardReleaseContext(ctx)\n"
            "print('\\n'.join(names if hr == 0 else []))\n"
        )
        wanted = {s.reader for s in self.slots}
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise ConfigError(f"pcscd exited: {self.log[-500:]}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                out = subprocess.run(  # noqa: S603 - our own interpreter and script
                    [_python(), "-c", script],
                    env=self.env,
                    capture_output=True,
                    timeout=5.0,
                    check=False,
                )
                seen = set(out.stdout.decode().split("\n")) - {""}
                if wanted <= seen:
                    return
            time.sleep(0.05)
        raise ConfigError(f"readers missing after {timeout:.0f} s: {sorted(wanted - seen)}")


def _python() -> str:
    import sys

    return sys.executable


def _free_port_pair() -> int:
    """A port P with P and P+1 both free on every interface (vpcd binds INADDR_ANY)."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind(("0.0.0.0", 0))  # noqa: S104 - a probe, closed at once
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("0.0.0.0", port + 1))  # noqa: S104 - a probe, closed at once
                except OSError:
                    continue
                return port
    raise ConfigError("no free pair of TCP ports for vpcd")
