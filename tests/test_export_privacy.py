"""The export reader as adversary: what an auditor's file must not let anyone learn.

One population, answered through the real engine: five staff of Dinas Kesehatan
(one of them the only non-civil-servant, one the only newcomer, one who names a
colleague in the suggestion box), five service users of the Inspektorat (one of
them also a member of the Dinas Kesehatan staff), and two experts. Each test
reads the export as a unit official, a curious auditor or whoever finds the file
would, and tries to single a person out.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from bot.export_cli import export_command
from core.config import load_settings
from core.engine import Engine
from core.export import (
    DURATION_BUCKETS,
    SUPPRESSED,
    ExportData,
    Table,
    anonymise,
    export_rows,
    number_range,
)
from core.identity import pseudonym
from core.questionnaire import Questionnaire
from core.redaction import redact
from core.scoring import K_ANONYMITY
from core.storage import Storage
from core.units import UnitRegistry
from tests.conftest import SECRET
from tests.support.survey_driver import Clock, Respondent, answer_all, start_as
from tests.support.walker import Step, cycling
from tests.test_scoring import CODES, EKSPER, EKSTERNAL

ASN = ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"])
NON_ASN = ("Pegawai unit", ["Ya, pegawai non-ASN", "Lebih dari 2 tahun"])
NEWCOMER = ("Pegawai unit", ["Ya, ASN", "1–2 tahun"])
NAMING = "Pak Budi (Kasi Pelayanan) minta uang 50 ribu, hp 0812-3456-7890"
NON_ASN_SECONDS = 437
BOTH_UNITS = "in2"  # staff of Dinas Kesehatan, and a service user of the Inspektorat


async def respond(
    engine: Engine,
    clock: Clock,
    user: str,
    who: tuple[str, list[str]],
    unit_query: str,
    shift: int,
    seconds: float = 600.0,
    suggestion: str | None = None,
) -> None:
    """One complete response, answers cycling through the codes from ``shift``."""
    r = Respondent(engine, user_id=user)
    await start_as(r, who[0], who[1], unit_query)
    clock.advance(seconds=seconds)
    varied = cycling(CODES, shift)

    def choose(step: Step) -> str | None:
        if suggestion is not None and "Saran" in step.text:
            return suggestion
        return varied(step)

    await answer_all(r, choose)
    await r.press("Kirim")
    assert "Terima kasih" in r.text
    clock.advance(minutes=30)


async def populate(engine: Engine, clock: Clock) -> None:
    staff = [NON_ASN, NEWCOMER, ASN, ASN, ASN]
    for i, who in enumerate(staff):
        await respond(
            engine,
            clock,
            f"in{i}",
            who,
            "kesehatan",
            shift=i,
            seconds=NON_ASN_SECONDS if who is NON_ASN else 600 + 60 * i,
            suggestion=NAMING if i == 3 else None,
        )
    for i, user in enumerate(["ex0", "ex1", "ex2", "ex3", BOTH_UNITS]):
        await respond(engine, clock, user, EKSTERNAL, "inspektorat", shift=i)
    for i in range(2):
        await respond(engine, clock, f"ek{i}", EKSPER, "kesehatan", shift=i)


async def close_period(storage: Storage, period: str) -> None:
    async with storage.transaction() as tx:
        await tx.execute(
            "INSERT INTO periods(period, closed_on, purge_after) VALUES (?, ?, ?)",
            (period, "2025-12-31", "2026-03-31"),
        )


@pytest.fixture
async def closed(engine: Engine, clock: Clock, storage: Storage) -> Storage:
    await populate(engine, clock)
    await close_period(storage, engine.period)
    return storage


async def export(
    storage: Storage, questionnaire: Questionnaire, units: UnitRegistry, open_period: bool = False
) -> ExportData:
    async with storage.transaction() as tx:
        return await export_rows(
            tx, questionnaire, units, questionnaire.period, open_period=open_period
        )


def records(table: Table | None) -> list[dict[str, object]]:
    assert table is not None, "no answer rows"
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def by_response(rows: list[dict[str, object]]) -> dict[object, list[dict[str, object]]]:
    grouped: dict[object, list[dict[str, object]]] = {}
    for row in rows:
        grouped.setdefault(row["response_id"], []).append(row)
    return grouped


def fingerprint(rows: list[dict[str, object]]) -> tuple[tuple[str, str], ...]:
    """A response's scored answers: what the test (not the reader) uses to follow it."""
    return tuple(sorted((str(r["question_id"]), str(r["value"])) for r in rows if r["dimension"]))


def stored_fingerprints(
    db_path: Path, questionnaire: Questionnaire
) -> dict[int, tuple[tuple[str, str], ...]]:
    scored = {q.id for q in questionnaire.questions if q.dimension}
    result: dict[int, list[tuple[str, str]]] = {}
    with closing(sqlite3.connect(db_path)) as db:
        for response_id, qid, value in db.execute(
            "SELECT response_id, question_id, value FROM answers"
        ):
            if qid in scored:
                result.setdefault(int(response_id), []).append((qid, str(json.loads(value))))
    return {rid: tuple(sorted(pairs)) for rid, pairs in result.items()}


async def test_no_column_links_one_persons_responses_and_ids_change_every_export(
    closed: Storage, questionnaire: Questionnaire, units: UnitRegistry, db_path: Path
) -> None:
    stored = stored_fingerprints(db_path, questionnaire)
    key = pseudonym(SECRET, "telegram", BOTH_UNITS)
    with closing(sqlite3.connect(db_path)) as db:
        own = {
            int(r[0])
            for r in db.execute("SELECT id FROM responses WHERE respondent_key = ?", (key,))
        }
    assert len(own) == 2
    exports = [
        by_response(records((await export(closed, questionnaire, units)).answers)) for _ in range(2)
    ]
    stored_by_print = {fp: rid for rid, fp in stored.items()}
    assert len(stored_by_print) == len(stored), "the test needs distinct answer patterns"

    for responses in exports:
        to_stored = {eid: stored_by_print[fingerprint(rows)] for eid, rows in responses.items()}
        mine = [eid for eid, rid in to_stored.items() if rid in own]
        assert len(mine) == 2
        # The reader tries every response-level column for a value that the person's
        # two responses share and nobody else has.
        columns = [
            c
            for c in next(iter(responses.values()))[0]
            if c not in ("question_id", "dimension", "value", "item_score")
        ]
        for column in columns:
            values = {eid: {str(r[column]) for r in rows} for eid, rows in responses.items()}
            constant = {eid: v.pop() for eid, v in values.items() if len(v) == 1}
            if mine[0] in constant and constant[mine[0]] == constant.get(mine[1]):
                holders = [e for e, v in constant.items() if v == constant[mine[0]]]
                assert len(holders) > 2, f"column {column} links one person's two responses"
        assert len(to_stored) == 10  # 5 staff + 5 service users; the 2 experts are withheld
        # Nothing of the stored ids or their order survives.
        assert not set(to_stored) & set(to_stored.values())
        in_file_order = [to_stored[eid] for eid in responses]
        assert in_file_order != sorted(in_file_order)

    first, second = ({fingerprint(rows): eid for eid, rows in e.items()} for e in exports)
    assert first != second, "a response keeps its id from one export to the next"


async def test_no_time_and_no_exact_duration(
    closed: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    data = await export(closed, questionnaire, units)
    rows = records(data.answers)
    time_of_day = re.compile(r"\d{1,2}:\d{2}|T\d{2}")
    for table in (data.answers, data.units, data.dimensions):
        assert table is not None
        for row in table.rows:
            for value in row:
                # someone who knows a colleague took 7 min 17 s cannot find them
                assert value != NON_ASN_SECONDS
                assert not (isinstance(value, str) and time_of_day.search(value)), value
    labels = {label for _, label in DURATION_BUCKETS}
    durations = {r["duration"] for r in rows}
    assert durations <= labels | {SUPPRESSED} and durations & labels
    # even the bucket: the non-civil-servant is the only one of the unit under 10 minutes
    assert "5–10 min" not in durations
    days = {r["completed_on"] for r in rows}
    assert days and all(
        re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", str(d)) or d == SUPPRESSED for d in days
    )


async def test_profile_items_never_single_out_a_respondent(
    closed: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    rows = records((await export(closed, questionnaire, units)).answers)
    # The head of unit knows who the only non-civil-servant and the only newcomer are.
    assert not [r for r in rows if r["value"] in ("non_asn", "1_2")]
    # No unit × group under k appears at all (two experts at Dinas Kesehatan).
    responses = by_response(rows)
    sizes = Counter((rs[0]["unit_code"], rs[0]["group"]) for rs in responses.values())
    assert sizes == {("dinkes", "internal"): 5, ("inspektorat", "eksternal"): 5}
    # Whatever profile values, days, buckets and flags were released (a suppression
    # mark is a value too), every combination is shared by at least k responses of
    # the same unit and group.
    profile_ids = {
        q.id for q in questionnaire.questions if q.dimension is None and q.type != "text"
    }
    classes: Counter[tuple[object, ...]] = Counter()
    for rs in responses.values():
        released = tuple(
            sorted(
                (str(r["question_id"]), str(r["value"]))
                for r in rs
                if str(r["question_id"]).startswith("screen_") or r["question_id"] in profile_ids
            )
        )
        present = tuple(sorted(str(r["question_id"]) for r in rs))
        first = rs[0]
        context = tuple(
            first[c] for c in ("unit_code", "group", "completed_on", "duration", "flags")
        )
        classes[(*context, released, present)] += 1
    assert min(classes.values()) >= K_ANONYMITY, classes


async def test_free_text_is_apart_unlinked_and_redacted_for_review(
    closed: Storage,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    db_path: Path,
    tmp_path: Path,
) -> None:
    rows = records((await export(closed, questionnaire, units)).answers)
    text_ids = {q.id for q in questionnaire.questions if q.type == "text"}
    assert not [r for r in rows if r["question_id"] in text_ids or "Budi" in str(r["value"])]

    settings = load_settings(database_path=db_path, spi_secret_key=None)
    review = tmp_path / "saran.csv"
    assert await export_command(settings, "xlsx", None, free_text=review) == 0
    with review.open(encoding="utf-8-sig", newline="") as fh:
        texts = list(csv.DictReader(fh))
    assert len(texts) == 1
    (line,) = texts
    assert "Budi" not in line["text"] and "Kasi" not in line["text"] and "0812" not in line["text"]
    assert line["text"].startswith("[nama] ([jabatan]) minta uang")
    assert line["auto_redactions"] == "3"
    # nothing to join it with the answers: no id, no day, no duration, no other answer
    assert set(line) == {
        "period",
        "unit_code",
        "group",
        "question_id",
        "text",
        "auto_redactions",
        "reviewed_by",
    }


async def test_answers_of_an_open_period_only_when_asked_for_and_audited(
    engine: Engine,
    clock: Clock,
    storage: Storage,
    questionnaire: Questionnaire,
    units: UnitRegistry,
) -> None:
    for i in range(5):
        await respond(engine, clock, f"ex{i}", EKSTERNAL, "inspektorat", shift=i)
    before = await export(storage, questionnaire, units)
    await respond(engine, clock, "newcomer", EKSTERNAL, "inspektorat", shift=5)
    after = await export(storage, questionnaire, units)
    # Two exports of an open period would differ by exactly the newcomer's answers.
    assert before.answers is None and after.answers is None
    assert "Jawaban" not in [t.title for t in after.tables]
    assert after.units.rows  # the unit scores stay available

    asked = await export(storage, questionnaire, units, open_period=True)
    assert asked.answers is not None and asked.responses == 6
    async with storage.transaction() as tx:
        explicit = await export_rows(
            tx, questionnaire, units, questionnaire.period, open_period=True, actor="admin:42"
        )
        logged = await tx.fetchall("SELECT actor, action, detail FROM audit_log")
    assert explicit.answers is not None
    assert [(r["actor"], r["action"]) for r in logged] == [("admin:42", "export")]
    assert json.loads(logged[0]["detail"])["open_period"] is True


SCORE_COLUMNS = ("index", "corrected", "ci_low", "ci_high", "band", "n_total")


def unit_scores(data: ExportData, unit: str) -> dict[str, object]:
    row = next(r for r in records(data.units) if r["unit_code"] == unit)
    return {c: v for c, v in row.items() if c in SCORE_COLUMNS or c.startswith(("n_", "index_"))}


Tallies = dict[tuple[object, object], tuple[int, float]]


def dimension_tallies(data: ExportData, unit: str) -> Tallies:
    """(group, dimension) → (n, mean) of every mean the sheet shows for ``unit``."""
    return {
        (r["group"], r["dimension"]): (int(str(r["n"])), float(str(r["mean"])))
        for r in records(data.dimensions)
        if r["unit_code"] == unit and r["mean"] is not None
    }


def subtract(before: Tallies, after: Tallies) -> dict[tuple[object, object], float]:
    """The reader's attack: the sum after minus the sum before, where one person was added."""
    return {
        key: n * mean - before[key][0] * before[key][1]
        for key, (n, mean) in after.items()
        if key in before and n == before[key][0] + 1
    }


async def test_score_sheets_of_an_open_period_do_not_give_one_newcomer_by_subtraction(
    engine: Engine,
    clock: Clock,
    storage: Storage,
    questionnaire: Questionnaire,
    units: UnitRegistry,
) -> None:
    """An export of an open period without answers shows what `/skor` shows.

    The reader holds two such exports and knows who answered in between. The live
    tallies (an export with answer rows has them) give that person's dimension means
    exactly; the exported figures do not move at all.
    """
    for i in range(5):
        await respond(engine, clock, f"ex{i}", EKSTERNAL, "inspektorat", shift=i)
    before = await export(storage, questionnaire, units)
    live_before = await export(storage, questionnaire, units, open_period=True)
    await respond(engine, clock, "newcomer", EKSTERNAL, "inspektorat", shift=5)
    after = await export(storage, questionnaire, units)
    live_after = await export(storage, questionnaire, units, open_period=True)

    # The attack works on live figures: the newcomer's own dimension means, exactly.
    known = {fingerprint(rows) for rows in by_response(records(live_before.answers)).values()}
    (newcomer,) = [
        rows
        for rows in by_response(records(live_after.answers)).values()
        if fingerprint(rows) not in known
    ]
    own: dict[str, list[float]] = {}
    for row in newcomer:
        if row["dimension"] and row["item_score"] is not None:
            own.setdefault(str(row["dimension"]), []).append(float(str(row["item_score"])))
    live = subtract(
        dimension_tallies(live_before, "inspektorat"), dimension_tallies(live_after, "inspektorat")
    )
    recovered = {dim: value for (group, dim), value in live.items() if group == "eksternal"}
    assert recovered and recovered == pytest.approx(
        {dim: sum(v) / len(v) for dim, v in own.items() if dim in recovered}
    )

    # The export without answers: nothing to subtract.
    assert before.answers is None and after.answers is None
    assert unit_scores(after, "inspektorat") == unit_scores(before, "inspektorat")
    assert dimension_tallies(after, "inspektorat") == dimension_tallies(before, "inspektorat")
    assert not subtract(
        dimension_tallies(before, "inspektorat"), dimension_tallies(after, "inspektorat")
    )
    assert unit_scores(after, "inspektorat")["index"] is not None  # figures are shown


@pytest.mark.parametrize(
    ("text", "expected", "masked"),
    [
        ("Pak Budi (Kasi Pelayanan) minta uang", "[nama] ([jabatan]) minta uang", 2),
        ("Bu Sri Wahyuni di loket 3", "[nama] di loket 3", 1),
        ("Kepala Seksi Perizinan sering minta amplop", "[jabatan] sering minta amplop", 1),
        ("hubungi 0812-3456-7890 atau budi@mail.id", "hubungi [nomor] atau [email]", 2),
        ("NIP 198001012005011001", "NIP [nomor]", 1),
        ("lihat https://contoh.id/foto", "lihat [tautan]", 1),
        ("Kadis dr. Andi", "[jabatan] [nama]", 2),
        # ordinary words stay: a lowercase "pak" or "bu" addressing the reader, "kasih"
        ("pelayanan sudah bagus, pak. terima kasih", "pelayanan sudah bagus, pak. terima kasih", 0),
        ("antrean 3 jam, bu", "antrean 3 jam, bu", 0),
    ],
)
def test_redaction_masks_names_titles_and_numbers(text: str, expected: str, masked: int) -> None:
    assert redact(text) == (expected, masked)


def test_anonymise_suppresses_only_the_rare_values_and_enough_of_them() -> None:
    """Twelve staff of one unit: 7 "pelaksana", 4 "fungsional", 1 "pimpinan"."""
    roles = ["pelaksana"] * 7 + ["fungsional"] * 4 + ["pimpinan"]
    days = ["2025-06-10"] * 6 + ["2025-06-11"] * 5 + ["2025-07-01"]
    status = ["asn"] * 11 + ["non_asn"]
    rows = [
        {"day": d, "month": d[:7], "role": r, "status": s}
        for d, r, s in zip(days, roles, status, strict=True)
    ]
    released = anonymise(rows, [["day", "month"], ["role"], ["status"]], k=5)
    classes = Counter(tuple(r.values()) for r in released)
    assert min(classes.values()) >= 5
    # The lone July day falls back to the month... which is also alone: then the
    # day is kept for the others and only that one, plus the smallest other day
    # class to make five, is suppressed (6 + 5 + 1: the five of the 11th join it).
    assert [r["day"] for r in released].count(SUPPRESSED) == 6
    assert {r["day"] for r in released} == {"2025-06-10", SUPPRESSED}
    # roles: the lone head of unit is hidden, with as few others as k requires
    hidden_roles = [r["role"] for r in released].count(SUPPRESSED)
    assert 0 < hidden_roles < len(rows)
    # the only non-civil-servant is never visible
    assert "non_asn" not in {r["status"] for r in released}
    # under k records nothing is released
    assert anonymise(rows[:4], [["role"]], k=5) == [{"role": SUPPRESSED}] * 4


def test_a_rare_exact_number_falls_back_to_its_range() -> None:
    visits = [1, 2, 3, 2, 3, 5, 6, 7, 8, 9]
    rows = [{"ex_jumlah": v, "ex_jumlah:range": number_range(v)} for v in visits]
    released = anonymise(rows, [["ex_jumlah", "ex_jumlah:range"]], k=5)
    # every exact count is rarer than 5; the ranges keep "4–10" for five of them
    assert Counter(r["ex_jumlah"] for r in released) == {"4–10": 5, SUPPRESSED: 5}
