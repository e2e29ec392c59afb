"""The conversation engine: one incoming event in, replies out, state in SQLite.

Every event is handled inside one database transaction: the event id is
claimed (a redelivered update changes nothing), the respondent's state is read,
the answer is written, and only after COMMIT does the channel show the next
question. Buttons carry ``seq|action|arg`` tokens; ``seq`` is the screen
counter, so a button from an earlier screen is recognised as stale and a
forged token is rejected instead of changing an answer.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.aggregates import BurstWatch, record_completion
from core.events import (
    Button,
    Choice,
    Command,
    Incoming,
    Outcome,
    Reply,
    Text,
    Unsupported,
)
from core.fieldwork import count_screenout
from core.i18n import gettext_for
from core.identity import open_time, pseudonym, seal_time
from core.invitations import Invitation, consume, normalise_token, record_route
from core.invitations import find as find_invitation
from core.model import AnswerValue, SessionState, Stage, utcnow
from core.navigation import (
    first_unanswered,
    hidden_answered,
    next_question,
    previous_question,
    visible_questions,
)
from core.questionnaire import Group, Question, Questionnaire
from core.retention import is_closed
from core.scoring import CITY_UNIT
from core.storage import DuplicateEvent, StaleCache, Storage, Transaction, new_response_id
from core.units import Unit, UnitRegistry, normalise

UNITS_PER_PAGE = 8
StageAction = Callable[["Engine", "Turn", str], Awaitable[None]]
SEQ_START_SPACE = 900_000_000  # leaves 10^8 screens below the token's 9 digits
GLOBAL = "-"  # seq of buttons that stay valid on any screen (language, resume)
STALE_ATTEMPTS = 3  # another process's commits are rare; three in a row means trouble
_TOKEN = re.compile(r"^(-|\d{1,9})\|([a-z]{1,6})\|([a-z0-9_]{0,24})$")


def first_seq() -> int:
    """A new session's screen counter starts at random, so buttons from before an
    erasure (or from another person's session) never match by accident."""
    return secrets.randbelow(SEQ_START_SPACE) + 1


def token(seq: int | str, action: str, arg: str = "") -> str:
    return f"{seq}|{action}|{arg}"


@dataclass
class Turn:
    """Everything one event's handling needs and produces."""

    tx: Transaction
    state: SessionState
    incoming: Incoming
    now: dt.datetime
    outcome: Outcome = field(default_factory=Outcome)
    forget: bool = False  # delete the session instead of saving it (declined, erased)

    def _(self, message: str) -> str:
        return gettext_for(self.state.locale).gettext(message)

    def say(self, text: str, buttons: list[list[Button]] | None = None, edit: bool = False) -> None:
        self.outcome.replies.append(Reply(text=text, buttons=buttons or [], edit=edit))

    @property
    def pressed(self) -> bool:
        return isinstance(self.incoming.event, Choice)


class Engine:
    """The survey conversation, independent of any chat channel."""

    def __init__(
        self,
        questionnaire: Questionnaire,
        units: UnitRegistry,
        storage: Storage,
        secret_key: bytes,
        default_locale: str = "id",
        clock: Callable[[], dt.datetime] = utcnow,
        notice: PrivacyNotice | None = None,
        sampled_only: bool = False,
    ) -> None:
        self.questionnaire = questionnaire
        self.sampled_only = sampled_only  # SAMPLED_ONLY: only sampled invitations count
        self.units = units
        self.storage = storage
        self.secret_key = secret_key
        self.default_locale = default_locale
        self.clock = clock
        self.period = questionnaire.period
        self.bursts = BurstWatch()
        self.notice = notice or PrivacyNotice()

    def respondent_key(self, channel: str, user_id: str) -> str:
        return pseudonym(self.secret_key, channel, user_id)

    async def handle(self, incoming: Incoming) -> Outcome:
        key = self.respondent_key(incoming.sender.channel, incoming.sender.user_id)
        for attempt in range(1, STALE_ATTEMPTS + 1):
            try:
                return await self._handle_once(incoming, key)
            except DuplicateEvent:
                return await self._redelivered(incoming, key)
            except StaleCache:  # another process wrote meanwhile: again, from the database
                if attempt == STALE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _handle_once(self, incoming: Incoming, key: str) -> Outcome:
        """One transaction: the event is claimed with the writes, in the same commit."""
        now = self.clock()
        async with self.storage.transaction() as tx:
            if incoming.event_id is not None:
                tx.claim_event_on_commit(incoming.event_id, now)
            state = await tx.get_session(key) or SessionState(
                respondent_key=key, locale=self.default_locale, seq=first_seq()
            )
            turn = Turn(tx=tx, state=state, incoming=incoming, now=now)
            await self._dispatch(turn)
            await self._persist(turn)
        turn.outcome.locale = turn.state.locale
        return turn.outcome

    async def _redelivered(self, incoming: Incoming, key: str) -> Outcome:
        """An event already processed: show the current screen again, change nothing.

        After a crash between the commit and the reply, the person still sees the
        screen they answered; re-rendering the stored state gets them going again.
        """
        async with self.storage.transaction() as tx:
            state = await tx.get_session(key)
            turn = Turn(
                tx=tx,
                state=state or SessionState(respondent_key=key, locale=self.default_locale),
                incoming=incoming,
                now=self.clock(),
                outcome=Outcome(duplicate=True),
            )
            if state is not None:
                await self._show_current(turn, hint=False)
        if turn.pressed and turn.outcome.replies:
            turn.outcome.replies[0].edit = True  # replace the pressed, outdated screen
        turn.outcome.locale = turn.state.locale
        return turn.outcome

    async def _persist(self, turn: Turn) -> None:
        """Keep a session only for someone who consented or chose a language.

        Someone who only looked at the consent screen, or declined, leaves no row.
        """
        state = turn.state
        keep = state.consented or state.locale != self.default_locale
        if turn.forget or not keep:
            await turn.tx.delete_session(state.respondent_key)
        else:
            await turn.tx.save_session(state)

    # -- dispatch --------------------------------------------------------
    async def _dispatch(self, turn: Turn) -> None:
        event = turn.incoming.event
        if isinstance(event, Command):
            await self._command(turn, event)
        elif isinstance(event, Choice):
            await self._choice(turn, event.token)
        elif isinstance(event, Text):
            await self._text(turn, event.text)
        elif isinstance(event, Unsupported):
            turn.say(turn._("Sorry, I can only read text and buttons."))
            await self._show_current(turn, hint=True)

    async def _command(self, turn: Turn, command: Command) -> None:
        name = command.name
        if name == "start":
            await self._remember_contact(turn)
            if await self._resume(turn, announce=True):
                return
            if command.args and await self._invited(turn, command.args):
                return
            await self._show_consent(turn)
        elif name == "lanjut":
            await self._remember_contact(turn)
            if not await self._resume(turn, announce=True):
                turn.say(turn._("You have no unfinished survey. Send /start to begin one."))
        elif name == "batal":
            await self._ask_cancel(turn)
        elif name == "bantuan":
            turn.say(self._help_text(turn))
        elif name == "privasi":
            turn.say(self._privacy_text(turn))
        elif name == "bahasa":
            turn.say(
                turn._("Choose your language:"),
                [
                    [Button("🇮🇩 Bahasa Indonesia", token(GLOBAL, "lang", "id"))],
                    [Button("🇬🇧 English", token(GLOBAL, "lang", "en"))],
                ],
            )
        elif name == "hapus_data":
            turn.say(
                turn._(
                    "This erases your contact details (used for reminders) and your unfinished "
                    "survey, and cuts your completed surveys loose from your pseudonym: they "
                    "stay in the statistics, but nobody, not even the inspectorate, can find "
                    "them from you again. You could then answer again for a unit you already "
                    "assessed, so please don't. Continue?"
                ),
                [
                    [Button(turn._("Yes, erase my data"), token(GLOBAL, "erase", "y"))],
                    [Button(turn._("No"), token(GLOBAL, "erase", "n"))],
                ],
            )
        else:
            turn.say(turn._("I do not know that command. Send /bantuan to see what I can do."))

    async def _choice(self, turn: Turn, raw: str) -> None:
        match = _TOKEN.match(raw)
        if match is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        seq, action, arg = match.groups()
        if seq == GLOBAL:
            await self._global_choice(turn, action, arg)
            return
        if int(seq) != turn.state.seq:
            turn.outcome.notice = turn._(
                "This button is no longer valid. Please use the latest message."
            )
            return
        handler = STAGE_ACTIONS.get((turn.state.stage, action))
        if handler is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        await handler(self, turn, arg)

    async def _global_choice(self, turn: Turn, action: str, arg: str) -> None:
        # Consent buttons are global: before consent nothing is stored, so there is
        # no screen counter to check them against; they only work before a survey.
        if action == "ok" and arg in ("y", "n"):
            if turn.state.stage in ("new", "consent", "declined", "done"):
                await self._on_consent(turn, arg)
            else:
                turn.outcome.notice = turn._(
                    "This button is no longer valid. Please use the latest message."
                )
        elif action == "lang" and arg in ("id", "en"):
            turn.state.locale = arg
            await self._remember_contact(turn)
            turn.outcome.notice = turn._("Language changed.")
            turn.say(turn._("The language is now English."), edit=True)
            await self._show_current(turn, hint=False)
        elif action == "inv" and normalise_token(arg) is not None:
            await self._on_invited_consent(turn, arg)
        elif action == "resume":
            await self._remember_contact(turn)
            if not await self._resume(turn, announce=False):
                await self._show_consent(turn)
        elif action == "erase" and arg == "y":
            await self._erase(turn)
        elif action == "erase" and arg == "n":
            turn.say(turn._("Nothing was erased."), edit=True)
        else:
            turn.outcome.notice = turn._("This button is not recognised.")

    async def _text(self, turn: Turn, text: str) -> None:
        stage = turn.state.stage
        if stage != "question" and normalise_token(text) is not None:
            await self._arrive_by_message(turn, text)
        elif stage == "unit":
            await self._filter_units(turn, text)
        elif stage == "question":
            question = self._current_question(turn)
            if question is not None and question.type in ("text", "number"):
                await self._typed_answer(turn, question, text)
                return
            turn.say(turn._("Please answer with one of the buttons."))
            await self._show_current(turn, hint=False)
        elif stage in ("consent", "group", "screening", "review", "cancel"):
            turn.say(turn._("Please use the buttons below."))
            await self._show_current(turn, hint=False)
        else:
            turn.say(
                turn._("Hello! Send /start to take the integrity survey, or /bantuan for help.")
            )

    # -- screens ---------------------------------------------------------
    def _advance(self, turn: Turn) -> int:
        """A new screen: older buttons become stale."""
        turn.state.seq += 1
        return turn.state.seq

    async def _show_current(self, turn: Turn, hint: bool) -> None:
        """Re-show the screen the respondent is on, with its still-valid buttons."""
        stage = turn.state.stage
        if stage == "consent":
            self._render_consent(turn)
        elif stage == "group":
            self._render_groups(turn)
        elif stage == "screening":
            self._render_screening(turn)
        elif stage == "unit":
            self._render_units(turn)
        elif stage in ("question", "review", "cancel"):
            await self._render_survey_screen(turn)
        elif hint:
            turn.say(turn._("Send /start to take the survey or /bantuan for help."))

    async def _render_survey_screen(self, turn: Turn) -> None:
        stage = turn.state.stage
        if stage == "question":
            question = self._current_question(turn)
            if question is not None and turn.state.response_id is not None:
                answers = await turn.tx.answers(turn.state.response_id)
                self._render_question(turn, question, answers, edit=False)
        elif stage == "review":
            await self._render_review(turn, edit=False)
        elif stage == "cancel":
            self._render_cancel(turn, edit=False)

    async def _show_consent(self, turn: Turn) -> None:
        self._fresh(turn, "consent")
        self._advance(turn)
        self._render_consent(turn)

    def _render_consent(self, turn: Turn) -> None:
        q = self.questionnaire
        intro = html.escape(q.intro.get(turn.state.locale))
        text = "\n\n".join(
            [
                f"<b>{html.escape(q.title.get(turn.state.locale))}</b>",
                intro,
                turn._(
                    "Taking part is voluntary. Nothing is stored unless you agree. Your answers "
                    "are never stored with your name, username or chat ID, nor with a time of "
                    "day. Unit officials see only combined figures for groups of at least 5 "
                    "people. /privasi says what is kept, who sees what, and for how long."
                ),
                turn._("Do you agree to take part?"),
            ]
        )
        turn.say(
            text,
            [
                [Button(turn._("✅ I agree"), token(GLOBAL, "ok", "y"))],
                [Button(turn._("No, thank you"), token(GLOBAL, "ok", "n"))],
            ],
            edit=turn.pressed,
        )

    async def _on_consent(self, turn: Turn, arg: str) -> None:
        if arg == "y" and await is_closed(turn.tx, self.period):
            self._say_closed(turn)
        elif arg == "y":
            self._fresh(turn, "group", consented=True)
            await self._remember_contact(turn)
            self._advance(turn)
            self._render_groups(turn)
        elif arg == "n":
            if not turn.state.consented:
                turn.forget = True  # no session, no contact: nothing at all is kept
            turn.state.stage = "declined"
            self._advance(turn)
            turn.say(
                turn._(
                    "Understood, thank you. No answer was recorded, and you will not receive "
                    "reminders. Send /start if you change your mind."
                ),
                edit=True,
            )

    def _render_groups(self, turn: Turn) -> None:
        locale = turn.state.locale
        lines = [bold(turn._("Which group do you belong to?"))]
        buttons = []
        for group in self.questionnaire.groups:
            lines.append(
                f"• <b>{html.escape(group.title.get(locale))}</b>: "
                f"{html.escape(group.description.get(locale))}"
            )
            buttons.append(
                [Button(group.title.get(locale), token(turn.state.seq, "g", group.code))]
            )
        turn.say("\n".join(lines), buttons, edit=turn.pressed)

    async def _on_group(self, turn: Turn, arg: str) -> None:
        group = self.questionnaire.group(arg)
        if group is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        if group.one_unit_per_period:
            done_unit = await turn.tx.completed_internal_unit(
                turn.state.respondent_key, self.period
            )
            if done_unit is not None:
                unit = self.units.get(done_unit)
                turn.say(
                    turn._(
                        "You have already assessed {unit} as a civil servant in period {period}. "
                        "A civil servant assesses one unit per period. You may still take part "
                        "as a service user."
                    ).format(
                        unit=html.escape(unit.name if unit else done_unit), period=self.period
                    ),
                    edit=True,
                )
                self._advance(turn)
                self._render_groups(turn)
                return
        if group.city_level and await self._expert_choices_used(turn, group):
            turn.say(await self._expert_limit_text(turn, group), edit=True)
            self._advance(turn)
            self._render_groups(turn)
            return
        if turn.state.unit == CITY_UNIT and not group.city_level:  # the city: experts only
            turn.state.unit, turn.state.route = None, "self"
        turn.state.group = group.code
        turn.state.screening = {}
        await self._next_screening(turn, group)

    # -- experts: the city as a whole, or up to N units they know ------------
    # An expert (a ``city_level`` group) chooses either the pseudo-unit ``kota`` (the
    # government as a whole, counted at the city level) or a unit they know; after
    # each unit's response they may go on to the next one, up to ``max_units`` units
    # per period. Each unit is its own response, answered and screened on its own.
    def _city(self, turn: Turn) -> Unit:
        name = turn._("{government} as a whole").format(government=self.units.government)
        return Unit(code=CITY_UNIT, name=name, kind="kota")

    def _unit_named(self, turn: Turn, code: str) -> Unit | None:
        """A unit of the units file or, for an expert's response, the city as a whole."""
        return self._city(turn) if code == CITY_UNIT else self.units.get(code)

    async def _expert_done(self, turn: Turn, group: Group) -> list[str]:
        return await turn.tx.completed_units(turn.state.respondent_key, self.period, group.code)

    async def _expert_choices_used(self, turn: Turn, group: Group, code: str | None = None) -> bool:
        """Whether choosing ``code`` (None: anything new) would exceed an expert's share:
        the city as a whole, or up to ``max_units`` units, per period."""
        done = await self._expert_done(turn, group)
        if code is not None and code in done:
            return False  # "already completed for this unit" says it better
        if CITY_UNIT in done:
            return True
        if code == CITY_UNIT:
            return bool(done)
        return len(done) >= group.max_units

    async def _expert_limit_text(self, turn: Turn, group: Group) -> str:
        done = await self._expert_done(turn, group)
        names = [(u.name if (u := self._unit_named(turn, c)) else c) for c in done]
        return turn._(
            "As an expert you assess either {city} or up to {n} units you know in period "
            "{period}. You have already assessed: {done}."
        ).format(
            city=html.escape(self._city(turn).name),
            n=group.max_units,
            period=html.escape(self.period),
            done=html.escape(", ".join(names)),
        )

    async def _on_more(self, turn: Turn, arg: str) -> None:
        """An expert goes on to another unit they know: the unit list, then screening."""
        group = self.questionnaire.group(arg)
        if group is None or not group.city_level:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        if await is_closed(turn.tx, self.period):
            self._say_closed(turn)
            return
        self._fresh(turn, "group")
        await self._on_group(turn, group.code)

    async def _next_screening(self, turn: Turn, group: Group) -> None:
        """The unit first (screening asks about "this unit"), then screening, then the survey."""
        pending = [s for s in group.screening if s.id not in turn.state.screening]
        self._advance(turn)
        if turn.state.unit is None:
            turn.state.stage = "unit"
            turn.state.unit_query = None
            turn.state.unit_page = 0
            self._render_units(turn)
        elif pending:
            turn.state.stage = "screening"
            self._render_screening(turn)
        else:
            await self._after_screening(turn, turn.state.unit)

    def _render_screening(self, turn: Turn) -> None:
        group = self.questionnaire.group(turn.state.group or "")
        assert group is not None
        screen = next(s for s in group.screening if s.id not in turn.state.screening)
        locale = turn.state.locale
        unit = self._unit_named(turn, turn.state.unit or "")
        turn.say(
            f"<b>{html.escape(group.title.get(locale))}</b>"
            + (f" · {html.escape(unit.name)}" if unit else "")
            + f"\n\n{html.escape(screen.text.get(locale))}",
            [
                [Button(o.text.get(locale), token(turn.state.seq, "s", o.code))]
                for o in screen.options
            ],
            edit=turn.pressed,
        )

    async def _on_screening(self, turn: Turn, arg: str) -> None:
        group = self.questionnaire.group(turn.state.group or "")
        if group is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        screen = next(s for s in group.screening if s.id not in turn.state.screening)
        option = screen.option(arg)
        if option is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        if not option.eligible:
            if turn.state.unit is not None:
                await count_screenout(
                    turn.tx, self.period, turn.state.unit, group.code, screen.id, option.code
                )
            reason = option.reason.get(turn.state.locale) if option.reason else ""
            if not option.retry_other_group:  # no other group is offered: the attempt ends
                self._reset(turn, "done")
                turn.say(html.escape(reason), [], edit=True)
                return
            turn.state.stage = "ineligible"
            seq = self._advance(turn)
            turn.say(
                html.escape(reason),
                [[Button(turn._("Choose another group"), token(seq, "again"))]],
                edit=True,
            )
            return
        turn.state.screening[screen.id] = option.code
        await self._next_screening(turn, group)

    async def _on_again(self, turn: Turn, arg: str) -> None:
        if turn.state.route == "sample":  # a personal invitation is for its group only
            turn.state.route, turn.state.unit = "self", None
        turn.state.stage = "group"
        turn.state.group = None
        turn.state.screening = {}
        self._advance(turn)
        self._render_groups(turn)

    # -- unit choice -----------------------------------------------------
    def _unit_candidates(self, turn: Turn) -> list[Unit]:
        if turn.state.unit_query:
            return self.units.search(turn.state.unit_query)
        return self.units.units

    def _render_units(self, turn: Turn) -> None:
        units = self._unit_candidates(turn)
        pages = max(1, -(-len(units) // UNITS_PER_PAGE))
        page = min(max(turn.state.unit_page, 0), pages - 1)
        seq = turn.state.seq
        shown = units[page * UNITS_PER_PAGE : (page + 1) * UNITS_PER_PAGE]
        buttons = [[Button(u.name, token(seq, "u", u.code))] for u in shown]
        group = self.questionnaire.group(turn.state.group or "")
        expert = group is not None and group.city_level
        city = self._city(turn)
        if self._city_matches(turn, turn.state.unit_query or ""):  # unless searched away
            buttons.insert(0, [Button("🏙️ " + city.name, token(seq, "u", CITY_UNIT))])
        nav = []
        if page > 0:
            nav.append(Button("⬅️", token(seq, "pg", str(page - 1))))
        if pages > 1:
            nav.append(Button(f"{page + 1}/{pages}", token(seq, "pg", str(page))))
        if page < pages - 1:
            nav.append(Button("➡️", token(seq, "pg", str(page + 1))))
        if nav:
            buttons.append(nav)
        if turn.state.unit_query:
            buttons.append([Button(turn._("Show all units"), token(seq, "all"))])
            text = turn._("Units matching “{query}”:").format(
                query=html.escape(turn.state.unit_query)
            )
        else:
            text = turn._("Which unit do you want to assess?")
        text = f"<b>{text}</b>\n" + turn._(
            "Choose from the list, or type part of its name (e.g. “kesehatan” or “tembalang”)."
        )
        if expert and group is not None:
            text += "\n" + turn._(
                "As an expert, assess {city}, or up to {n} units whose work you know, one "
                "after another."
            ).format(city=html.escape(city.name), n=group.max_units)
        turn.say(text, buttons, edit=turn.pressed)

    def _city_matches(self, turn: Turn, query: str) -> bool:
        """The city is offered to experts, above the units, unless a search excludes it."""
        group = self.questionnaire.group(turn.state.group or "")
        name = normalise(self._city(turn).name)
        expert = group is not None and group.city_level
        return expert and all(word in name for word in normalise(query).split())

    async def _on_unit_page(self, turn: Turn, arg: str) -> None:
        if not arg.isdigit():
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        turn.state.unit_page = int(arg)
        self._advance(turn)
        self._render_units(turn)

    async def _on_unit_all(self, turn: Turn, arg: str) -> None:
        turn.state.unit_query = None
        turn.state.unit_page = 0
        self._advance(turn)
        self._render_units(turn)

    async def _filter_units(self, turn: Turn, text: str) -> None:
        query = text.strip()[:60]
        if not self.units.search(query) and not (query and self._city_matches(turn, query)):
            turn.say(
                turn._(
                    "No unit matches “{query}”. Try another word, or pick from the list."
                ).format(query=html.escape(query))
            )
            return
        turn.state.unit_query = query
        turn.state.unit_page = 0
        self._advance(turn)
        self._render_units(turn)

    async def _on_unit(self, turn: Turn, arg: str) -> None:
        group = self.questionnaire.group(turn.state.group or "")
        city = arg == CITY_UNIT and group is not None and group.city_level
        unit = self._city(turn) if city else self.units.get(arg)
        if unit is None or group is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        if group.city_level and await self._expert_choices_used(turn, group, unit.code):
            turn.say(await self._expert_limit_text(turn, group))
            self._advance(turn)
            self._render_units(turn)
            return
        key = turn.state.respondent_key
        if await turn.tx.has_completed(key, self.period, unit.code):
            turn.outcome.notice = turn._("Already completed for this unit.")
            turn.say(
                turn._(
                    "You have already completed the survey for {unit} in period {period}. "
                    "Thank you! You can choose another unit."
                ).format(unit=html.escape(unit.name), period=self.period)
            )
            self._advance(turn)
            self._render_units(turn)
            return
        if turn.state.unit != unit.code:  # another unit than an invitation's: self-selected
            turn.state.route = "self"
        turn.state.unit = unit.code
        await self._next_screening(turn, group)

    async def _begin(self, turn: Turn, unit: Unit) -> None:
        """Unit chosen and screening passed: the response starts at its first question."""
        group = self.questionnaire.group(turn.state.group or "")
        assert group is not None
        if await turn.tx.has_completed(turn.state.respondent_key, self.period, unit.code):
            turn.say(
                turn._("You have already completed the survey for this unit in this period."),
                edit=turn.pressed,
            )
            self._reset(turn, "done")
            return
        if group.city_level and await self._expert_choices_used(turn, group, unit.code):
            turn.say(await self._expert_limit_text(turn, group), edit=turn.pressed)
            self._reset(turn, "done")
            return
        response_id = new_response_id()
        await turn.tx.create_response(
            turn.state.respondent_key,
            self.period,
            group.code,
            unit.code,
            turn.incoming.sender.channel,
            started_seal=seal_time(self.secret_key, response_id, turn.now),
            questionnaire_version=self.questionnaire.version_label,
            response_id=response_id,
        )
        if turn.state.route != "self":
            await record_route(turn.tx, response_id, turn.state.route)
        for screen_id, code in turn.state.screening.items():
            await turn.tx.put_answer(response_id, f"screen_{screen_id}", code)
        turn.state.unit = unit.code
        turn.state.response_id = response_id
        first = visible_questions(self.questionnaire, group.code, {})[0]
        await self._go_to(turn, first, {}, edit=True)

    # -- arrival by invitation -------------------------------------------
    # A unit link, a poster's QR code or a personal invitation names the unit and the
    # group: they are shown with the consent, not asked. The token travels on the
    # consent button (nothing is stored before consent); a personal one is used up by
    # the consent press, a transaction that never creates the response.
    async def _arrive_by_message(self, turn: Turn, text: str) -> None:
        """A first WhatsApp message equal to a token works as `/start <token>`."""
        await self._remember_contact(turn)
        if await self._resume(turn, announce=True):
            return
        if not await self._invited(turn, text):
            await self._show_consent(turn)

    async def _valid_invitation(self, turn: Turn, raw: str) -> Invitation | None:
        found = None
        code = normalise_token(raw)
        if code is not None:
            found = await find_invitation(turn.tx, self.secret_key, code, self.period)
        group = self.questionnaire.group(found.group) if found is not None else None
        if found is None or group is None:
            return None
        city = found.unit == CITY_UNIT and group.city_level
        return found if city or self.units.get(found.unit) is not None else None

    async def _invited(self, turn: Turn, raw: str) -> bool:
        """Consent with the invitation's unit and group shown; False if the link is not valid."""
        invitation = await self._valid_invitation(turn, raw)
        if invitation is None:
            turn.say(
                turn._(
                    "This invitation link is not valid (it may be mistyped or from an earlier "
                    "survey period). You can still take part and choose your unit yourself."
                )
            )
            return False
        if invitation.used:
            self._say_invitation_used(turn, edit=False)
            return True
        await self._show_consent(turn)
        unit = self._unit_named(turn, invitation.unit)
        group = self.questionnaire.group(invitation.group)
        assert unit is not None and group is not None
        reply = turn.outcome.replies[-1]
        line = turn._("You are invited to assess {unit} as: {group}.").format(
            unit=bold(html.escape(unit.name)),
            group=html.escape(group.title.get(turn.state.locale)),
        )
        title, _, rest = reply.text.partition("\n\n")
        reply.text = f"{title}\n\n{line}\n\n{rest}"
        agree, accept = token(GLOBAL, "ok", "y"), token(GLOBAL, "inv", normalise_token(raw) or "")
        reply.buttons = [
            [Button(b.label, accept if b.token == agree else b.token) for b in row]
            for row in reply.buttons
        ]
        return True

    def _say_invitation_used(self, turn: Turn, edit: bool) -> None:
        turn.say(
            turn._(
                "This personal invitation link has already been used. Each personal link "
                "works only once, so that nobody can answer twice with it. If you have not "
                "answered yet, please ask the inspectorate for a new link."
            ),
            edit=edit,
        )

    async def _on_invited_consent(self, turn: Turn, arg: str) -> None:
        if turn.state.stage not in ("new", "consent", "declined", "done"):
            turn.outcome.notice = turn._(
                "This button is no longer valid. Please use the latest message."
            )
            return
        invitation = await self._valid_invitation(turn, arg)
        if invitation is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        if not await consume(turn.tx, invitation):
            self._say_invitation_used(turn, edit=True)
            return
        self._fresh(turn, "group", consented=True)
        turn.state.unit, turn.state.route = invitation.unit, invitation.route
        await self._remember_contact(turn)
        await self._on_group(turn, invitation.group)
        if turn.state.group is None:  # refused (one unit per period): choose freely
            turn.state.unit, turn.state.route = None, "self"

    async def _after_screening(self, turn: Turn, unit_code: str) -> None:
        """Screening passed: straight to the first question.

        Should a personal invitation have been used in this very event (a group without
        screening), the unit is shown with one Start button instead, so that the
        response is created by a later transaction than the one that used the token.
        """
        unit = self._unit_named(turn, unit_code)
        assert unit is not None
        event = turn.incoming.event
        if isinstance(event, Choice) and "|inv|" in event.token:
            turn.state.stage = "unit"
            turn.say(
                bold(turn._("Unit: {unit}").format(unit=html.escape(unit.name))),
                [[Button(turn._("Start ▶️"), token(turn.state.seq, "u", unit.code))]],
                edit=True,
            )
            return
        await self._begin(turn, unit)

    # -- questions -------------------------------------------------------
    def _current_question(self, turn: Turn) -> Question | None:
        return self.questionnaire.question(turn.state.question_id or "")

    async def _go_to(
        self, turn: Turn, question: Question | None, answers: dict[str, AnswerValue], edit: bool
    ) -> None:
        self._advance(turn)
        if question is None:
            turn.state.stage = "review"
            turn.state.question_id = None
            await self._render_review(turn, edit=edit, answers=answers)
            return
        turn.state.stage = "question"
        turn.state.question_id = question.id
        self._render_question(turn, question, answers, edit=edit)

    def _render_question(
        self, turn: Turn, question: Question, answers: dict[str, AnswerValue], edit: bool
    ) -> None:
        locale = turn.state.locale
        group = turn.state.group or ""
        shown = visible_questions(self.questionnaire, group, answers)  # once per screen
        number = next((i for i, q in enumerate(shown, 1) if q.id == question.id), len(shown))
        has_previous = number > 1 and shown[number - 1].id == question.id
        dimension = self.questionnaire.dimension(question.dimension or "")
        heading = dimension.title.get(locale) if dimension else turn._("About you and the service")
        lines = [
            f"<b>{html.escape(heading)}</b>",
            turn._("Question {n} of {total}").format(n=number, total=len(shown)),
            "",
            html.escape(question.text.get(locale)),
        ]
        if question.hint:
            lines.append(f"<i>{html.escape(question.hint.get(locale))}</i>")
        if turn.state.unit == CITY_UNIT:  # the questions speak of "this unit"
            lines.append(
                italic(
                    turn._("Here “this unit” means {city}.").format(
                        city=html.escape(self._city(turn).name)
                    )
                )
            )
        seq = turn.state.seq
        given = answers.get(question.id)
        buttons: list[list[Button]] = []
        if question.type == "multi":
            chosen = given if isinstance(given, list) else []
            buttons = [
                [
                    Button(
                        ("☑️ " if o.code in chosen else "⬜ ") + o.text.get(locale),
                        token(seq, "m", o.code),
                    )
                ]
                for o in question.options
            ]
            buttons.append([Button(turn._("Done ✔️"), token(seq, "md"))])
            lines.append(italic(turn._("Choose all that apply, then press Done.")))
        elif question.is_choice:
            buttons = [
                [
                    Button(
                        ("✅ " if given == o.code else "") + o.text.get(locale),
                        token(seq, "a", o.code),
                    )
                ]
                for o in question.options
            ]
        elif question.type == "number":
            lines.append(f"<i>{self._number_prompt(turn, question)}</i>")
            if isinstance(given, int | float):
                lines.append(turn._("Your answer: {value}").format(value=_fmt_number(given)))
        else:
            lines.append(
                italic(
                    turn._("Type your answer (at most {n} characters).").format(
                        n=question.max_length
                    )
                )
            )
            if isinstance(given, str):
                lines.append(turn._("Your answer: {value}").format(value=html.escape(given)))
        nav: list[Button] = []
        if has_previous:
            nav.append(Button(turn._("⬅️ Back"), token(seq, "b")))
        if question.optional:
            nav.append(Button(turn._("Skip ➡️"), token(seq, "sk")))
        elif question.type in ("text", "number") and question.id in answers:
            nav.append(Button(turn._("Keep ➡️"), token(seq, "kp")))
        if nav:
            buttons.append(nav)
        turn.say("\n".join(lines), buttons, edit=edit)

    def _number_prompt(self, turn: Turn, question: Question) -> str:
        low = _fmt_number(question.min_value or 0)
        high = _fmt_number(question.max_value or 0)
        return turn._("Type a number from {low} to {high}.").format(low=low, high=high)

    async def _answers(self, turn: Turn) -> dict[str, AnswerValue]:
        assert turn.state.response_id is not None
        return await turn.tx.answers(turn.state.response_id)

    async def _store_and_advance(
        self, turn: Turn, question: Question, value: AnswerValue, edit: bool
    ) -> None:
        assert turn.state.response_id is not None and turn.state.group is not None
        await turn.tx.put_answer(turn.state.response_id, question.id, value)
        answers = await self._answers(turn)
        following = next_question(self.questionnaire, turn.state.group, question.id, answers)
        await self._go_to(turn, following, answers, edit=edit)

    async def _on_answer(self, turn: Turn, arg: str) -> None:
        question = self._current_question(turn)
        if question is None or question.type == "multi" or question.option(arg) is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        await self._store_and_advance(turn, question, arg, edit=True)

    async def _on_toggle(self, turn: Turn, arg: str) -> None:
        question = self._current_question(turn)
        option = question.option(arg) if question else None
        if question is None or question.type != "multi" or option is None:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        assert turn.state.response_id is not None
        answers = await self._answers(turn)
        given = answers.get(question.id)
        chosen = [c for c in given if isinstance(c, str)] if isinstance(given, list) else []
        if arg in chosen:
            chosen.remove(arg)
        elif option.exclusive:
            chosen = [arg]
        else:
            exclusive = {o.code for o in question.options if o.exclusive}
            chosen = [c for c in chosen if c not in exclusive] + [arg]
        order = [o.code for o in question.options]
        chosen.sort(key=order.index)
        await turn.tx.put_answer(turn.state.response_id, question.id, chosen)
        answers[question.id] = chosen
        self._advance(turn)
        self._render_question(turn, question, answers, edit=True)

    async def _on_multi_done(self, turn: Turn, arg: str) -> None:
        question = self._current_question(turn)
        if question is None or question.type != "multi":
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        answers = await self._answers(turn)
        chosen = answers.get(question.id)
        if not chosen and not question.optional:
            turn.outcome.notice = turn._("Choose at least one option first.")
            return
        await self._store_and_advance(turn, question, chosen if chosen else None, edit=True)

    async def _on_skip(self, turn: Turn, arg: str) -> None:
        question = self._current_question(turn)
        if question is None or not question.optional:
            turn.outcome.notice = turn._("This question cannot be skipped.")
            return
        await self._store_and_advance(turn, question, None, edit=True)

    async def _on_keep(self, turn: Turn, arg: str) -> None:
        question = self._current_question(turn)
        answers = await self._answers(turn)
        if question is None or question.id not in answers:
            turn.outcome.notice = turn._("This button is not recognised.")
            return
        await self._store_and_advance(turn, question, answers[question.id], edit=True)

    async def _on_back(self, turn: Turn, arg: str) -> None:
        answers = await self._answers(turn)
        group = turn.state.group or ""
        current = turn.state.question_id if turn.state.stage == "question" else None
        previous = previous_question(self.questionnaire, group, current, answers)
        if previous is None:
            turn.outcome.notice = turn._("This is the first question.")
            return
        await self._go_to(turn, previous, answers, edit=True)

    async def _typed_answer(self, turn: Turn, question: Question, text: str) -> None:
        value: AnswerValue
        if question.type == "number":
            parsed = _parse_number(text)
            low, high = question.min_value or 0, question.max_value or 0
            if (
                parsed is None
                or not (low <= parsed <= high)
                or (question.integer and parsed != int(parsed))
            ):
                turn.say(
                    turn._("That is not a valid answer. {prompt}").format(
                        prompt=self._number_prompt(turn, question)
                    )
                )
                return
            value = int(parsed) if question.integer else parsed
        else:
            value = text.strip()
            if not value:
                turn.say(turn._("Please type your answer, or press Skip."))
                return
            if len(value) > question.max_length:
                turn.say(
                    turn._(
                        "Your answer is too long ({length} characters). Please shorten it to at "
                        "most {n} characters."
                    ).format(length=len(value), n=question.max_length)
                )
                return
        await self._store_and_advance(turn, question, value, edit=False)

    # -- review and submission --------------------------------------------
    async def _render_review(
        self, turn: Turn, edit: bool, answers: dict[str, AnswerValue] | None = None
    ) -> None:
        if answers is None:
            answers = await self._answers(turn)
        group = self.questionnaire.group(turn.state.group or "")
        unit = self._unit_named(turn, turn.state.unit or "")
        assert group is not None and unit is not None
        shown = visible_questions(self.questionnaire, group.code, answers)
        answered = sum(1 for q in shown if answers.get(q.id) is not None)
        unsure = sum(
            1
            for q in shown
            if isinstance(answers.get(q.id), str)
            and q.is_choice
            and (opt := q.option(str(answers.get(q.id)))) is not None
            and opt.score is None
            and q.dimension is not None
        )
        skipped = sum(1 for q in shown if q.id in answers and answers[q.id] is None)
        locale = turn.state.locale
        seq = turn.state.seq
        text = "\n".join(
            [
                bold(turn._("Almost done: please check")),
                turn._("Unit: {unit}").format(unit=html.escape(unit.name)),
                turn._("As: {group}").format(group=html.escape(group.title.get(locale))),
                turn._("Answered: {answered} of {total} questions").format(
                    answered=answered, total=len(shown)
                ),
                turn._("“Don't know” answers: {n}; skipped: {m}").format(n=unsure, m=skipped),
                "",
                turn._("Press Send to submit. You can still go back and change an answer."),
            ]
        )
        turn.say(
            text,
            [
                [Button(turn._("📨 Send"), token(seq, "send"))],
                [Button(turn._("⬅️ Back"), token(seq, "b"))],
            ],
            edit=edit,
        )

    def _say_closed(self, turn: Turn) -> None:
        turn.say(
            turn._(
                "The survey period {period} is closed and its results are final. Thank you for "
                "your interest."
            ).format(period=html.escape(self.period)),
            edit=turn.pressed,
        )

    async def _on_send(self, turn: Turn, arg: str) -> None:
        state = turn.state
        assert state.response_id is not None and state.group is not None
        if await is_closed(turn.tx, self.period):
            self._say_closed(turn)
            return
        answers = await self._answers(turn)
        missing = first_unanswered(self.questionnaire, state.group, answers)
        if missing is not None:
            await self._go_to(turn, missing, answers, edit=True)
            return
        unit = self._unit_named(turn, state.unit or "")
        if await turn.tx.has_completed(state.respondent_key, self.period, state.unit or ""):
            await turn.tx.discard_response(state.response_id)
            turn.say(
                turn._("You have already completed the survey for this unit in this period."),
                edit=True,
            )
            self._reset(turn, "done")
            return
        await turn.tx.delete_answers(
            state.response_id, hidden_answered(self.questionnaire, state.group, answers)
        )
        response = await turn.tx.get_response(state.response_id)
        started = (
            open_time(self.secret_key, state.response_id, response.started_seal)
            if response is not None and response.started_seal
            else None
        )
        duration = int((turn.now - started).total_seconds()) if started is not None else None
        await turn.tx.complete_response(state.response_id, turn.now.date(), duration)
        await record_completion(
            turn.tx,
            self.questionnaire,
            state.response_id,
            duration,
            turn.now,
            self.bursts,
            self.sampled_only,
        )
        group = self.questionnaire.group(state.group)
        more = (
            group is not None
            and group.city_level
            and not await self._expert_choices_used(turn, group)
        )
        seq = self._reset(turn, "done")
        buttons = [[Button(turn._("Assess another unit"), token(seq, "new"))]]
        if more and group is not None:
            label = turn._("Assess another unit you know as an expert")
            buttons.insert(0, [Button(label, token(seq, "more", group.code))])
        turn.say(
            "\n\n".join(
                [
                    bold(turn._("Thank you!"))
                    + " "
                    + turn._("Your answers about {unit} have been saved.").format(
                        unit=html.escape(unit.name if unit else "")
                    ),
                    turn._(
                        "The inspectorate combines them with other respondents' answers into an "
                        "integrity index for each unit, to find and fix corruption risks before "
                        "KPK's national survey. Unit officials see only combined figures for "
                        "groups of at least 5 people. Inspectorate analysts may check single "
                        "answers, but without your name, chat ID or the time you answered."
                    ),
                ]
            ),
            buttons,
            edit=True,
        )

    async def _on_new(self, turn: Turn, arg: str) -> None:
        await self._show_consent(turn)

    # -- cancel, resume, erase -------------------------------------------
    async def _ask_cancel(self, turn: Turn) -> None:
        active = ("question", "review", "screening", "unit", "group", "consent", "cancel")
        if turn.state.stage not in active:
            turn.say(turn._("You have no unfinished survey to cancel."))
            return
        turn.state.stage = "cancel"
        self._advance(turn)
        self._render_cancel(turn, edit=False)

    def _render_cancel(self, turn: Turn, edit: bool) -> None:
        seq = turn.state.seq
        turn.say(
            turn._("Discard your unfinished survey? Your answers so far will be deleted."),
            [
                [Button(turn._("Yes, discard"), token(seq, "cx", "y"))],
                [Button(turn._("No, continue"), token(seq, "cx", "n"))],
            ],
            edit=edit,
        )

    async def _on_cancel(self, turn: Turn, arg: str) -> None:
        if arg == "y":
            if turn.state.response_id is not None:
                await turn.tx.discard_response(turn.state.response_id)
            self._reset(turn, "new")
            turn.say(
                turn._("Your unfinished survey was discarded. Send /start to begin again."),
                edit=True,
            )
        else:
            if not await self._resume(turn, announce=False, edit=True):
                await self._show_consent(turn)

    async def _resume(self, turn: Turn, announce: bool, edit: bool = False) -> bool:
        """Continue an unfinished response at its first unanswered question."""
        response = await turn.tx.open_response(turn.state.respondent_key)
        if response is None:
            return False
        state = turn.state
        state.response_id, state.group, state.unit = response.id, response.group, response.unit
        answers = await self._answers(turn)
        if announce:
            unit = self._unit_named(turn, response.unit)
            turn.say(
                turn._("Welcome back! Continuing your survey about {unit}.").format(
                    unit=html.escape(unit.name if unit else response.unit)
                )
            )
        await self._go_to(
            turn, first_unanswered(self.questionnaire, response.group, answers), answers, edit
        )
        return True

    def _reset(self, turn: Turn, stage: Stage) -> int:
        self._fresh(turn, stage)
        return self._advance(turn)

    def _fresh(self, turn: Turn, stage: Stage, consented: bool | None = None) -> None:
        """A clean state at ``stage``, keeping who it is, the language, consent and seq."""
        old = turn.state
        turn.state = SessionState(
            respondent_key=old.respondent_key,
            locale=old.locale,
            seq=old.seq,
            consented=old.consented if consented is None else consented,
            stage=stage,
        )

    async def _erase(self, turn: Turn) -> None:
        response = await turn.tx.open_response(turn.state.respondent_key)
        if response is not None:
            await turn.tx.discard_response(response.id)
        sender = turn.incoming.sender
        if sender.address is not None:
            await turn.tx.delete_contact(sender.channel, sender.address)
        await turn.tx.dissociate(turn.state.respondent_key)
        turn.forget = True
        turn.say(
            turn._(
                "Done: your contact details and unfinished survey were erased, and your "
                "completed answers can no longer be linked to you. You will not receive "
                "reminders."
            ),
            edit=True,
        )

    # -- contacts ----------------------------------------------------------
    async def _remember_contact(self, turn: Turn) -> None:
        """Only someone who consented becomes a contact (for reminders)."""
        sender = turn.incoming.sender
        if sender.address is not None and turn.state.consented:
            await turn.tx.upsert_contact(sender.channel, sender.address, turn.state.locale)

    # -- texts -------------------------------------------------------------
    def _help_text(self, turn: Turn) -> str:
        return "\n".join(
            [
                bold(turn._("Commands")),
                "/start – " + turn._("start or continue the survey"),
                "/lanjut – " + turn._("continue an unfinished survey"),
                "/batal – " + turn._("discard the unfinished survey"),
                "/bahasa – " + turn._("Bahasa Indonesia / English"),
                "/privasi – " + turn._("how your data is handled"),
                "/hapus_data – " + turn._("erase your contact data and unfinished survey"),
                "/berhenti – " + turn._("stop reminders"),
                "/langganan – " + turn._("receive reminders again"),
                "/bantuan – " + turn._("this help"),
            ]
        )

    def _privacy_text(self, turn: Turn) -> str:
        notice = self.notice
        parts = [
            bold(turn._("Your privacy")),
            turn._(
                "What is kept: your answers, under a pseudonym computed with a secret key from "
                "your account number, so that each person answers once per unit. With them "
                "only the day you finished and how long it took, never a time of day, your "
                "name, username or chat ID."
            ),
            turn._(
                "For reminders, only if you agreed: your chat ID and language, in a separate "
                "table with no pseudonym and no times. /berhenti stops reminders; /hapus_data "
                "erases this record and cuts your completed answers loose from your pseudonym."
            ),
            turn._(
                "Who sees what: unit officials see only combined figures for groups of at "
                "least 5 people, refreshed only after at least 5 new answers. Inspectorate "
                "analysts get exports without names, IDs or times of day; typed answers are "
                "reviewed before use and kept apart."
            ),
            turn._(
                "How long: contact details, unfinished surveys and reminder records are deleted "
                "{days} days after the survey period closes. Combined figures and answers that "
                "can no longer be linked to anyone are kept."
            ).format(days=notice.retention_days),
            turn._(
                "Controller: {controller}, for its integrity programme, as a task in the public "
                "interest (UU 27/2022 on personal data protection)."
            ).format(controller=html.escape(notice.controller)),
        ]
        if notice.contact:
            parts.append(
                turn._("Questions or requests: {contact}").format(
                    contact=html.escape(notice.contact)
                )
            )
        return "\n\n".join(parts)


@dataclass(frozen=True)
class PrivacyNotice:
    """Who answers for the data, and how long chat-side records live (from settings)."""

    controller: str = "Inspektorat"
    contact: str = ""
    retention_days: int = 90


def bold(text: str) -> str:
    return f"<b>{text}</b>"


def italic(text: str) -> str:
    return f"<i>{text}</i>"


def _parse_number(text: str) -> float | None:
    cleaned = text.strip().replace(" ", "")
    if re.fullmatch(r"-?\d{1,9}([.,]\d{1,4})?", cleaned) is None:
        return None
    return float(cleaned.replace(",", "."))


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


# Which button actions are valid on which screen; anything else is refused.
STAGE_ACTIONS: dict[tuple[str, str], StageAction] = {
    ("consent", "ok"): Engine._on_consent,
    ("group", "g"): Engine._on_group,
    ("screening", "s"): Engine._on_screening,
    ("ineligible", "again"): Engine._on_again,
    ("unit", "u"): Engine._on_unit,
    ("unit", "pg"): Engine._on_unit_page,
    ("unit", "all"): Engine._on_unit_all,
    ("question", "a"): Engine._on_answer,
    ("question", "m"): Engine._on_toggle,
    ("question", "md"): Engine._on_multi_done,
    ("question", "sk"): Engine._on_skip,
    ("question", "kp"): Engine._on_keep,
    ("question", "b"): Engine._on_back,
    ("review", "b"): Engine._on_back,
    ("review", "send"): Engine._on_send,
    ("cancel", "cx"): Engine._on_cancel,
    ("done", "new"): Engine._on_new,
    ("done", "more"): Engine._on_more,
}
