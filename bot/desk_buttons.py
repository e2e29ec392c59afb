"""The officials' desk buttons (``adm|action|id``) on every channel: the account part
of their tokens, reading a pressed token back, and the revocations a press asks for.

``bot/render.py`` puts these buttons under the desk's lists; Telegram
(``bot/admin_handlers.py``) and WhatsApp (``bot/whatsapp/desk.py``) read them back
here, and the desk judges the caller again on every press.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core import desk as d
from core.desk import Caller, Desk, Refused

# rank/prog: a page of the ranking or progress table; rev/rma/rvi: revoke an official,
# remove an admin, revoke an invite. An account on WhatsApp is prefixed with ``w``.
_TOKEN = re.compile(r"^adm\|(rank|prog|rev|rvi|rma)\|(w?)([0-9]{1,18})$")


@dataclass(frozen=True)
class DeskButton:
    action: str
    number: int  # a page, an invite id or an account
    channel: str  # the account's channel (rev, rma)


def button_id(user_id: int, channel: str) -> str:
    """An account in a button's data: a WhatsApp number is prefixed with ``w``."""
    return f"w{user_id}" if channel == "whatsapp" else str(user_id)


def parse(data: str) -> DeskButton | None:
    match = _TOKEN.match(data)
    if match is None:
        return None
    channel = "whatsapp" if match.group(2) else "telegram"
    return DeskButton(match.group(1), int(match.group(3)), channel)


async def revoke(desk: Desk, caller: Caller, button: DeskButton) -> d.Done | Refused:
    """What a rev, rma or rvi press asks the desk for."""
    if button.action == "rev":
        return await desk.revoke_official(caller, button.number, button.channel)
    if button.action == "rma":
        return await desk.remove_admin(caller, button.number, button.channel)
    return await desk.revoke_invite(caller, button.number)
