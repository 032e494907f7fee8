"""The command table: (CLA, INS) -> handler. docs/card-os.md documents each row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardperso.card import commands_admin, commands_file, commands_security, sm

if TYPE_CHECKING:
    from cardperso.card.os import Handler

HANDLERS: dict[tuple[int, int], Handler] = {
    **commands_file.HANDLERS,
    **commands_security.HANDLERS,
    **commands_admin.HANDLERS,
    (0x00, 0x86): sm.general_authenticate,
}
