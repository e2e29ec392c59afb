"""Fieldwork commands: `population import`, `links`, `sample` and `progress`.

All of them work offline: links are built from TELEGRAM_BOT_USERNAME and
WHATSAPP_NUMBER, and no Bot API call is made. A bad input file loads nothing
and prints one line per problem (row and column). See docs/FIELDWORK.md.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from bot.export_cli import read_snapshot
from bot.poster import write_poster, write_qr
from bot.services import load_survey
from core.config import Settings, SettingsError
from core.fieldwork import progress, progress_table, screenout_lines, screenouts
from core.invitations import (
    InvitationKind,
    issue,
    personal_invitations,
    personal_token,
    telegram_link,
    unit_token,
    whatsapp_link,
    withdraw_unused,
)
from core.model import utcnow
from core.population import PopulationError, read_population, replace_population, target_sample
from core.questionnaire import DataFileError, Questionnaire
from core.sampling import draw, read_roster
from core.scoring import CITY_UNIT
from core.storage import Storage
from core.units import Unit, UnitRegistry

ACTOR = "cli"


def _fail(command: str, message: str) -> int:
    print(f"spi-bot {command}: {message}", file=sys.stderr)
    return 1


def _print_issues(error: DataFileError, what: str) -> None:
    print(
        f"{error.path}: {what} not loaded, nothing changed ({len(error.issues)} problem(s))",
        file=sys.stderr,
    )
    for found in error.issues:
        print(f"  {found.field}: {found.reason}", file=sys.stderr)


def _bot_username(settings: Settings) -> str:
    if not settings.telegram_bot_username:
        raise SettingsError(
            "TELEGRAM_BOT_USERNAME: required for invitation links (the bot's username "
            "without @, e.g. spi_semarang_bot); no Bot API call is made to look it up"
        )
    return settings.telegram_bot_username.lstrip("@")


def _unit_and_group(
    questionnaire: Questionnaire, units: UnitRegistry, unit: str, group: str
) -> tuple[Unit, str] | str:
    code, chosen = unit.strip().lower(), questionnaire.group(group)
    if code == CITY_UNIT and chosen is not None and chosen.city_level:  # experts, per city
        return units.city, group
    found = units.get(code)
    if found is None:
        return f"unknown unit code '{unit}' (see the units file for the codes)"
    if questionnaire.group(group) is None:
        codes = ", ".join(g.code for g in questionnaire.groups)
        return f"unknown group '{group}' (expected one of: {codes})"
    return found, group


# -- population import ----------------------------------------------------------
async def population_import(settings: Settings, path: Path) -> int:
    questionnaire, units = load_survey(settings)
    groups: list[str] = [g.code for g in questionnaire.groups]
    try:
        city_groups = [g.code for g in questionnaire.groups if g.city_level]
        rows = read_population(path, units, groups, city_groups)
    except PopulationError as exc:
        _print_issues(exc, "population")
        return 1
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            await replace_population(tx, questionnaire.period, rows)
            await tx.audit(
                ACTOR, "population.import", f"{len(rows)} rows from {path.name}", utcnow()
            )
    finally:
        await storage.close()
    margin = settings.sample_margin_of_error
    print(
        f"population for period {questionnaire.period}: {len(rows)} rows "
        f"({len({r.unit for r in rows})} units) loaded from {path}"
    )
    print(f"target samples at ±{margin * 100:g} points, 95 % confidence:")
    for row in rows:
        print(
            f"  {row.unit:<16} {row.group:<10} N={row.size:<6} n={target_sample(row.size, margin)}"
        )
    return 0


# -- links, QR codes and posters ------------------------------------------------
async def links(settings: Settings, unit: str, group: str, out_dir: Path, poster: bool) -> int:
    questionnaire, units = load_survey(settings)
    username = _bot_username(settings)
    key = settings.secret_key()
    if unit == "all":
        chosen = list(units.units)
    else:
        found = _unit_and_group(questionnaire, units, unit, group)
        if isinstance(found, str):
            return _fail("links", found)
        chosen = [found[0]]
    if questionnaire.group(group) is None:
        return _fail("links", f"unknown group '{group}'")
    kind: InvitationKind = "poster" if poster else "link"
    period = questionnaire.period
    tokens = {u.code: unit_token(key, period, u.code, group, kind) for u in chosen}
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            for u in chosen:
                await issue(tx, key, [tokens[u.code]], period, u.code, group, kind)
            await tx.audit(
                ACTOR, f"{kind}.issue", f"{len(chosen)} unit(s), group {group}", utcnow()
            )
    finally:
        await storage.close()
    group_title = questionnaire.group(group)
    assert group_title is not None
    for u in chosen:
        token = tokens[u.code]
        telegram = telegram_link(username, token)
        whatsapp = (
            whatsapp_link(settings.whatsapp_number, token) if settings.whatsapp_number else None
        )
        print(f"{u.name} ({u.code}), {group_title.title.get('id')}, period {period}")
        print(f"  Telegram: {telegram}")
        if whatsapp:
            print(f"  WhatsApp: {whatsapp}")
        qr_path = out_dir / f"{'poster-' if poster else ''}qr-{u.code}-{group}.png"
        write_qr(telegram, qr_path)
        print(f"  QR code:  {qr_path}")
        if poster:
            poster_path = out_dir / f"poster-{u.code}-{group}.png"
            write_poster(
                poster_path,
                unit_name=u.name,
                government=units.government,
                title=questionnaire.title.get("id"),
                telegram_url=telegram,
                whatsapp_url=whatsapp,
            )
            print(f"  Poster:   {poster_path}")
    return 0


# -- sampling ---------------------------------------------------------------------
async def sample(
    settings: Settings,
    roster_path: Path,
    unit: str,
    group: str,
    n: int,
    seed: str,
    out: Path | None,
    replace: bool = False,
) -> int:
    questionnaire, units = load_survey(settings)
    found = _unit_and_group(questionnaire, units, unit, group)
    if isinstance(found, str):
        return _fail("sample", found)
    chosen_unit, _ = found
    username = _bot_username(settings)
    key = settings.secret_key()
    try:
        roster = read_roster(roster_path)
    except DataFileError as exc:
        _print_issues(exc, "roster")
        return 1
    extra = ["link"] + (["whatsapp_link"] if settings.whatsapp_number else [])
    clash = [c for c in roster.columns if c.lower() in extra]
    if clash:
        return _fail("sample", f"{roster_path}: the roster already has a column '{clash[0]}'")
    try:
        picked = draw(len(roster.rows), n, seed)
    except ValueError as exc:
        return _fail("sample", str(exc))
    period = questionnaire.period
    lines: list[list[str]] = []
    tokens: list[str] = []
    for position in picked:
        token = personal_token()
        tokens.append(token)
        line = [*roster.rows[position], telegram_link(username, token)]
        if settings.whatsapp_number:
            line.append(whatsapp_link(settings.whatsapp_number, token))
        lines.append(line)
    where = f"{chosen_unit.code}/{group}"
    target = out or Path(f"sample-{chosen_unit.code}-{group}.csv")
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            sent, used = await personal_invitations(tx, period, chosen_unit.code, group)
            if sent and not replace:
                return _fail(
                    "sample",
                    f"{where} already has {sent} personal invitations ({used} used) in period "
                    f"{period}; --replace withdraws the {sent - used} unused ones and draws again",
                )
            withdrawn = await withdraw_unused(tx, period, chosen_unit.code, group)
            await issue(tx, key, tokens, period, chosen_unit.code, group, "sample")
            # The list is written before the links go live: no live link without its list.
            _write_private_csv(target, [*roster.columns, *extra], lines)
            await tx.audit(
                ACTOR,
                "sample.issue",
                f"{len(tokens)} of {len(roster.rows)} drawn for {where} with seed {seed}; "
                f"{withdrawn} unused withdrawn",
                utcnow(),
            )
    finally:
        await storage.close()
    print(
        f"drew {len(picked)} of {len(roster.rows)} people from {roster_path} with seed "
        f"'{seed}'; {len(tokens)} single-use links for {where} -> {target}"
        + (f" ({withdrawn} unused earlier links withdrawn)" if withdrawn else "")
    )
    print("send the links, then delete the list: it is the only record of whose link is whose")
    return 0


def _write_private_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """The send-out list holds live links: readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# -- progress --------------------------------------------------------------------------
async def progress_command(
    settings: Settings, limit: int | None, only: list[str] | None = None
) -> int:
    questionnaire, units = load_survey(settings)
    storage = await Storage.open(settings.database_path)  # checks and migrates
    await storage.close()
    margin = settings.sample_margin_of_error
    async with read_snapshot(settings.database_path) as tx:
        rows = await progress(tx, questionnaire, units, margin, settings.sampled_only)
        outs = await screenouts(tx, questionnaire.period)
    if only:
        unknown = [u for u in only if units.get(u) is None and u != CITY_UNIT]
        if unknown:
            return _fail("progress", f"unknown unit code '{unknown[0]}'")
        rows = [r for r in rows if r.unit in only]
    behind = sum(1 for r in rows if r.shortfall)
    print(
        f"period {questionnaire.period}: {behind} of {len(rows)} unit groups behind target "
        f"(targets at ±{margin * 100:g} points, 95 %; '-' population: questionnaire target)"
        + ("; SAMPLED_ONLY: responses by personal invitation only" if settings.sampled_only else "")
    )
    print(progress_table(rows[:limit] if limit else rows))
    shown = {(r.unit, r.group) for r in rows}
    lines = screenout_lines([o for o in outs if (o.unit, o.group) in shown], rows)
    if lines:
        print("screened out (attempts):")
        for line in lines:
            print(f"  {line}")
    return 0
