"""The questionnaire as data: pydantic models, loading and cross-checks.

A survey period's questions live in one TOML file so that the inspectorate can
change wording, weights and skip logic without touching code. Loading either
returns a fully resolved, cross-checked :class:`Questionnaire` or raises
:class:`QuestionnaireError` naming the file, the field and the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

GroupCode = Literal["internal", "eksternal", "eksper"]
GROUP_CODES: tuple[GroupCode, ...] = ("internal", "eksternal", "eksper")
QuestionType = Literal["single", "multi", "yesno", "text", "number"]
Locale = Literal["id", "en"]

# Short identifiers keep Telegram callback data well under its 64-byte limit.
Ident = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,23}$")]
OptionCode = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,12}$")]
Score = Annotated[float, Field(ge=0, le=100)]
_Add = Callable[[str, str], None]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class LocalizedText(_Model):
    """A text in Indonesian (primary) with its English translation."""

    id: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]

    def get(self, locale: str) -> str:
        return self.en if locale == "en" else self.id


class Option(_Model):
    """One answer option; ``score`` None marks an unscored option ("tidak tahu")."""

    code: OptionCode
    text: LocalizedText
    score: Score | None = None
    exclusive: bool = False  # multi-select: choosing it clears the others ("tidak ada")
    short: LocalizedText | None = None  # for channels with short button titles (WhatsApp)


class ShowIf(_Model):
    """Skip logic: show a question only when an earlier answer is one of ``any_of``."""

    question: Ident
    any_of: Annotated[list[OptionCode], Field(min_length=1)]


class Question(_Model):
    id: Ident
    type: QuestionType
    text: LocalizedText
    groups: Annotated[list[GroupCode], Field(min_length=1)]
    dimension: Ident | None = None
    scale: Ident | None = None
    options: list[Option] = Field(default_factory=list)
    optional: bool = False
    show_if: ShowIf | None = None
    yes_score: Score | None = None
    no_score: Score | None = None
    min_value: float | None = None
    max_value: float | None = None
    integer: bool = True
    max_length: Annotated[int, Field(ge=1, le=1000)] = 300
    hint: LocalizedText | None = None

    @property
    def is_choice(self) -> bool:
        return self.type in ("single", "multi", "yesno")

    def option(self, code: str) -> Option | None:
        return next((o for o in self.options if o.code == code), None)


class ScreeningOption(_Model):
    code: OptionCode
    text: LocalizedText
    eligible: bool = True
    reason: LocalizedText | None = None  # told to a respondent who is not eligible
    short: LocalizedText | None = None  # for channels with short button titles (WhatsApp)
    # An ineligible answer offers "Choose another group" only where that is honest:
    # someone whose service went through a broker may not retry as a service user.
    retry_other_group: bool = True

    @model_validator(mode="after")
    def _reason_when_ineligible(self) -> ScreeningOption:
        if not self.eligible and self.reason is None:
            raise ValueError("an option with eligible = false needs a 'reason'")
        return self


class ScreeningQuestion(_Model):
    id: Ident
    text: LocalizedText
    options: Annotated[list[ScreeningOption], Field(min_length=2)]

    def option(self, code: str) -> ScreeningOption | None:
        return next((o for o in self.options if o.code == code), None)


class Group(_Model):
    code: GroupCode
    title: LocalizedText
    description: LocalizedText
    short: LocalizedText | None = None  # title for channels with short button titles (WhatsApp)
    screening: list[ScreeningQuestion] = Field(default_factory=list)
    weight: Annotated[float, Field(gt=0)] = 1.0
    min_sample: Annotated[int, Field(ge=1)] = 5
    target: Annotated[int, Field(ge=1)] = 30
    one_unit_per_period: bool = False
    # Counted at the level of the whole government (experts): a unit with fewer than
    # its minimum of its own uses the city-level figure of the group instead.
    city_level: bool = False
    # For a city_level group: a respondent assesses either the government as a whole
    # (the pseudo-unit ``kota``) or up to this many units they know, per period.
    max_units: Annotated[int, Field(ge=1)] = 3


class Dimension(_Model):
    code: Ident
    title: LocalizedText
    groups: Annotated[list[GroupCode], Field(min_length=1)]
    weight: Annotated[float, Field(gt=0)] = 1.0


class Bands(_Model):
    """Integrity bands; defaults are Inspektorat Kota Semarang's."""

    terjaga_min: Score = 78.0
    waspada_min: Score = 73.0
    low_label: LocalizedText = LocalizedText(id="riskan", en="at risk")

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.waspada_min >= self.terjaga_min:
            raise ValueError("waspada_min must be below terjaga_min")
        return self


def _default_burst_base() -> dict[GroupCode, int]:
    return {"internal": 10, "eksternal": 20, "eksper": 5}


def _default_burst_share() -> dict[GroupCode, float]:
    return {"internal": 0.1, "eksternal": 0.1, "eksper": 0.5}


class QualityRules(_Model):
    """Thresholds for the data-quality flags (what KPK penalises as *pengarahan*).

    The rules themselves are in core/quality.py and docs/QUALITY.md.
    """

    # Speeders: under `median_share` of the group's median completion time once
    # `median_after` completed responses of the group exist; before that, under
    # the time needed to read the group's questions at `reading_wpm` words per
    # minute; never a floor below `min_seconds`.
    min_seconds: Annotated[int, Field(ge=0)] = 60
    reading_wpm: Annotated[int, Field(ge=50, le=2000)] = 400
    median_share: Annotated[float, Field(gt=0, lt=1)] = 0.5
    median_after: Annotated[int, Field(ge=3)] = 30
    # Straight-lining: at least `straight_min_items` scored answers, at least
    # `straight_min_each_way` of them on forward and on reverse-keyed items,
    # whose option positions (0 = first, 1 = last scored option) have a
    # standard deviation of at most `straight_max_sd` and lean
    # to one end: |1 - 2 x mean position| >= `straight_min_lean` (a flat line in
    # the middle is consistent with both keyings, so it is not evidence).
    straight_min_items: Annotated[int, Field(ge=3)] = 8
    straight_min_each_way: Annotated[int, Field(ge=1)] = 2  # answers per keying
    straight_max_sd: Annotated[float, Field(ge=0, le=0.5)] = 0.15
    straight_min_lean: Annotated[float, Field(ge=0, le=1)] = 0.5
    # Bursts: completions for one unit and group within `burst_minutes`, at
    # least max(burst_base[group], burst_share[group] x population).
    burst_minutes: Annotated[int, Field(ge=1)] = 10
    burst_base: dict[GroupCode, Annotated[int, Field(ge=2)]] = Field(
        default_factory=_default_burst_base
    )
    burst_share: dict[GroupCode, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=_default_burst_share
    )
    # unit code -> group -> population: staff (internal), service users a day
    # (eksternal), experts who know the unit (eksper). Units not listed use the base.
    population: dict[str, dict[GroupCode, Annotated[int, Field(ge=1)]]] = Field(
        default_factory=dict
    )
    exclude_flagged: bool = False


class Questionnaire(_Model):
    period: Annotated[str, Field(min_length=1, max_length=16)]
    # Bumped whenever wording, options or scores change; each response records
    # the version it was answered on.
    version: Annotated[str, Field(min_length=1, max_length=16)] = "1"
    title: LocalizedText
    intro: LocalizedText
    scales: dict[str, list[Option]] = Field(default_factory=dict)
    groups: Annotated[list[Group], Field(min_length=1)]
    dimensions: Annotated[list[Dimension], Field(min_length=1)]
    questions: Annotated[list[Question], Field(min_length=1)]
    bands: Bands = Bands()
    quality: QualityRules = QualityRules()

    @property
    def version_label(self) -> str:
        return f"{self.period}/{self.version}"

    def group(self, code: str) -> Group | None:
        return next((g for g in self.groups if g.code == code), None)

    def dimension(self, code: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.code == code), None)

    def question(self, qid: str) -> Question | None:
        return self._by_id().get(qid)

    def model_post_init(self, context: object, /) -> None:
        self._index: dict[str, Question] | None = None
        self._groups_of: tuple[int, int] | None = None
        self._by_group: dict[str, tuple[Question, ...]] = {}
        self._editions: dict[str, Questionnaire] = {}

    def edition(self, label: str) -> Questionnaire:
        """The questionnaire a response with ``questionnaire_version`` = ``label`` was
        answered on, so that it keeps scoring with its own options and scores.

        Earlier editions are archived beside the file (``surveys/archive/``); responses
        stored before versions were recorded (label '') were answered on version 1.
        An unknown label falls back to this edition.
        """
        if label == self.version_label:
            return self
        return self._editions.get(label or f"{self.period}/1", self)

    def editions(self) -> list[Questionnaire]:
        """This edition first, then the archived ones, oldest first."""
        return [self, *(self._editions[label] for label in sorted(self._editions))]

    def questions_for(self, group: str) -> tuple[Question, ...]:
        """A group's questions in file order; built once per group (every press asks)."""
        key = (id(self.questions), len(self.questions))
        if self._groups_of != key:
            self._groups_of = key
            self._by_group = {}
        found = self._by_group.get(group)
        if found is None:
            found = self._by_group[group] = tuple(q for q in self.questions if group in q.groups)
        return found

    def _by_id(self) -> dict[str, Question]:
        """Built once: `/skor` looks questions up many times."""
        if self._index is None or len(self._index) != len(self.questions):
            self._index = {q.id: q for q in self.questions}
        return self._index


class Issue(BaseModel):
    """One problem in a data file: where (a dotted field path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class DataFileError(Exception):
    """A data file (questionnaire, units) that cannot be used, with every issue found."""

    def __init__(self, path: Path, issues: list[Issue]) -> None:
        self.path = path
        self.issues = issues
        lines = "\n".join(f"  - {i}" for i in issues)
        super().__init__(f"{path}: {len(issues)} problem(s)\n{lines}")


class QuestionnaireError(DataFileError):
    pass


M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path, error: type[DataFileError]) -> dict[str, object]:
    """Read a TOML file, turning I/O and syntax errors into ``error``."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(path, [Issue(field="(file)", reason="file not found")]) from None
    except OSError as exc:
        raise error(path, [Issue(field="(file)", reason=str(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise error(path, [Issue(field="(syntax)", reason=str(exc))]) from None


def read_model(path: Path, model: type[M], error: type[DataFileError]) -> M:
    """Read a TOML file into ``model``; every problem raises ``error`` naming the field."""
    data = read_toml(path, error)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(path, issues_from_validation(exc, data)) from None


def issues_from_validation(exc: ValidationError, data: object) -> list[Issue]:
    """Render pydantic errors with list items named by their ``id``/``code`` when present."""
    issues = []
    for err in exc.errors():
        issues.append(Issue(field=_field_path(err["loc"], data), reason=err["msg"]))
    return issues


def _field_path(loc: Iterable[int | str], data: object) -> str:
    parts: list[str] = []
    node: object = data
    for key in loc:
        if isinstance(key, int):
            label = f"[{key}]"
            if isinstance(node, list) and 0 <= key < len(node):
                node = node[key]
                if isinstance(node, dict):
                    for name_key in ("id", "code"):
                        name = node.get(name_key)
                        if isinstance(name, str):
                            label = f"[{key}]({name_key}={name})"
                            break
            else:
                node = None
            parts.append(label)
        else:
            node = node.get(key) if isinstance(node, dict) else None
            parts.append(f".{key}" if parts else key)
    return "".join(parts) or "(top level)"


ARCHIVE_DIR = "archive"  # earlier editions of a questionnaire file, for scoring old answers


def load_questionnaire(path: Path) -> Questionnaire:
    """Load, validate, resolve scales and cross-check a questionnaire file."""
    questionnaire = read_model(path, Questionnaire, QuestionnaireError)
    issues = resolve_and_check(questionnaire)
    if issues:
        raise QuestionnaireError(path, issues)
    archive = Path(path).parent / ARCHIVE_DIR
    for older in sorted(archive.glob(f"{Path(path).stem}-*.toml")):
        edition = load_questionnaire(older)
        questionnaire._editions[edition.version_label] = edition
    return questionnaire


def resolve_and_check(q: Questionnaire) -> list[Issue]:
    """Resolve scale references and check everything a schema alone cannot."""
    issues: list[Issue] = []

    def add(field: str, reason: str) -> None:
        issues.append(Issue(field=field, reason=reason))

    for name, options in q.scales.items():
        _check_options(f"scales.{name}", options, add)

    seen_groups: set[str] = set()
    for i, group in enumerate(q.groups):
        if group.code in seen_groups:
            add(f"groups[{i}].code", f"duplicate group '{group.code}'")
        seen_groups.add(group.code)
        ids = [s.id for s in group.screening]
        if len(set(ids)) != len(ids):
            add(f"groups[{i}](code={group.code}).screening", "duplicate screening question id")
        for j, screen in enumerate(group.screening):
            codes = [o.code for o in screen.options]
            where = f"groups[{i}](code={group.code}).screening[{j}](id={screen.id})"
            if len(set(codes)) != len(codes):
                add(f"{where}.options", "duplicate option code")
            if not any(o.eligible for o in screen.options):
                add(f"{where}.options", "no option is eligible, nobody could take part")
    for code in GROUP_CODES:
        if code not in seen_groups:
            add("groups", f"group '{code}' is missing")

    dim_codes: set[str] = set()
    for i, dim in enumerate(q.dimensions):
        if dim.code in dim_codes:
            add(f"dimensions[{i}].code", f"duplicate dimension '{dim.code}'")
        dim_codes.add(dim.code)

    seen: dict[str, Question] = {}
    wording: dict[tuple[str, str, str], str] = {}
    for i, question in enumerate(q.questions):
        where = f"questions[{i}](id={question.id})"
        if question.id in seen:
            add(f"{where}.id", "duplicate question id")
        for code in question.groups:
            for locale in ("id", "en"):
                text = question.text.get(locale)
                other = wording.setdefault((code, locale, text), question.id)
                if other != question.id:
                    add(
                        f"{where}.text.{locale}",
                        f"same wording as '{other}' for group {code}: neither a respondent "
                        "nor an auditor could tell the two apart",
                    )
        _resolve_options(question, q, where, add)
        _check_question(question, q, where, seen, add)
        seen[question.id] = question

    for group in q.groups:
        if not q.questions_for(group.code):
            add("questions", f"group '{group.code}' has no questions")
    return issues


def _check_options(where: str, options: list[Option], add: _Add) -> None:
    codes = [o.code for o in options]
    if len(set(codes)) != len(codes):
        add(where, "duplicate option code")
    if len(options) < 2:
        add(where, "needs at least two options")


def _resolve_options(question: Question, q: Questionnaire, where: str, add: _Add) -> None:
    if question.type == "yesno":
        if question.options or question.scale:
            add(f"{where}.options", "a yesno question has fixed options; use yes_score/no_score")
        question.options = [
            Option(code="ya", text=LocalizedText(id="Ya", en="Yes"), score=question.yes_score),
            Option(code="tidak", text=LocalizedText(id="Tidak", en="No"), score=question.no_score),
        ]
        return
    if question.type in ("single", "multi"):
        if question.scale and question.options:
            add(f"{where}.scale", "give either 'scale' or 'options', not both")
        elif question.scale:
            if question.scale not in q.scales:
                add(f"{where}.scale", f"unknown scale '{question.scale}'")
            else:
                question.options = [o.model_copy(deep=True) for o in q.scales[question.scale]]
        elif not question.options:
            add(f"{where}.options", "a choice question needs 'options' or a 'scale'")
        else:
            _check_options(f"{where}.options", question.options, add)
    elif question.options or question.scale:
        add(f"{where}.options", f"a {question.type} question takes no options")


def _check_question(
    question: Question, q: Questionnaire, where: str, seen: dict[str, Question], add: _Add
) -> None:
    if question.dimension is not None:
        dim = q.dimension(question.dimension)
        if dim is None:
            add(f"{where}.dimension", f"unknown dimension '{question.dimension}'")
        else:
            outside = [g for g in question.groups if g not in dim.groups]
            if outside:
                add(
                    f"{where}.groups",
                    f"dimension '{dim.code}' is not answered by group(s) {', '.join(outside)}",
                )
        if question.type in ("text", "number", "multi"):
            add(f"{where}.dimension", f"a {question.type} question cannot be scored")
        elif not any(o.score is not None for o in question.options):
            add(f"{where}.options", "a scored question needs at least one option with a score")
    elif any(o.score is not None for o in question.options) and question.type != "yesno":
        add(f"{where}.dimension", "options carry scores but the question has no dimension")
    if question.type == "number":
        if question.min_value is None or question.max_value is None:
            add(f"{where}.min_value", "a number question needs min_value and max_value")
        elif question.min_value >= question.max_value:
            add(f"{where}.max_value", "max_value must be greater than min_value")
    if question.type == "multi" and any(o.score is not None for o in question.options):
        add(f"{where}.options", "multi-select options are descriptive and carry no score")
    if question.show_if is not None:
        ref = seen.get(question.show_if.question)
        if ref is None:
            add(
                f"{where}.show_if.question",
                f"'{question.show_if.question}' is not an earlier question",
            )
        else:
            if not ref.is_choice:
                add(f"{where}.show_if.question", f"'{ref.id}' is not a choice question")
            missing = [g for g in question.groups if g not in ref.groups]
            if missing:
                add(f"{where}.show_if.question", f"'{ref.id}' is not asked to {', '.join(missing)}")
            codes = {o.code for o in ref.options}
            unknown = [c for c in question.show_if.any_of if c not in codes]
            if unknown:
                add(f"{where}.show_if.any_of", f"unknown option(s) of '{ref.id}': {unknown}")


# -- label lengths per channel ---------------------------------------------------

TELEGRAM_LABEL_MAX = 30  # our own limit, so that a button label fits a phone's width
WHATSAPP_BUTTONS_MAX = 3  # reply buttons per message
WHATSAPP_BUTTON_TITLE_MAX = 20
WHATSAPP_ROWS_MAX = 10  # rows in a list message
WHATSAPP_ROW_TITLE_MAX = 24
WHATSAPP_ROW_DESCRIPTION_MAX = 72
LOCALES: tuple[Locale, ...] = ("id", "en")


class _Label(BaseModel):
    where: str
    text: LocalizedText
    short: LocalizedText | None


def label_issues(q: Questionnaire) -> list[Issue]:
    """Every label too long for a channel, with its field path.

    On WhatsApp a choice of up to three options is sent as reply buttons
    (titles <= 20 characters), anything longer as a list (row titles <= 24, at
    most 10 rows, a multi-select also needing its "Selesai" row). A label with
    a ``short`` form shows the short form as the title and the full label as
    the row's description (<= 72). Telegram shows the full label (<= 30).
    """
    issues: list[Issue] = []
    for name, options in q.scales.items():
        labels = [
            _Label(where=f"scales.{name}[{i}](code={o.code})", text=o.text, short=o.short)
            for i, o in enumerate(options)
        ]
        _check_labels(labels, multi=False, where=f"scales.{name}", issues=issues)
    groups = [
        _Label(where=f"groups[{i}](code={g.code}).title", text=g.title, short=g.short)
        for i, g in enumerate(q.groups)
    ]
    _check_labels(groups, multi=False, where="groups", issues=issues, nested=False)
    for i, group in enumerate(q.groups):
        for j, screen in enumerate(group.screening):
            where = f"groups[{i}](code={group.code}).screening[{j}](id={screen.id}).options"
            labels = [
                _Label(where=f"{where}[{k}](code={o.code})", text=o.text, short=o.short)
                for k, o in enumerate(screen.options)
            ]
            _check_labels(labels, multi=False, where=where, issues=issues)
    for i, question in enumerate(q.questions):
        if not question.is_choice or question.scale is not None or question.type == "yesno":
            continue  # scales are checked once above; yes/no labels are fixed and short
        where = f"questions[{i}](id={question.id}).options"
        labels = [
            _Label(where=f"{where}[{k}](code={o.code})", text=o.text, short=o.short)
            for k, o in enumerate(question.options)
        ]
        _check_labels(labels, multi=question.type == "multi", where=where, issues=issues)
    return issues


def _check_labels(
    labels: list[_Label], multi: bool, where: str, issues: list[Issue], nested: bool = True
) -> None:
    as_buttons = not multi and len(labels) <= WHATSAPP_BUTTONS_MAX
    rows = len(labels) + (1 if multi else 0)
    if not as_buttons and rows > WHATSAPP_ROWS_MAX:
        issues.append(
            Issue(field=where, reason=f"{rows} rows; a WhatsApp list allows {WHATSAPP_ROWS_MAX}")
        )
    kind, limit = (
        ("reply-button title", WHATSAPP_BUTTON_TITLE_MAX)
        if as_buttons
        else ("list-row title", WHATSAPP_ROW_TITLE_MAX)
    )
    text_field = ".text" if nested else ""
    for label in labels:
        for locale in LOCALES:
            full = label.text.get(locale)
            if len(full) > TELEGRAM_LABEL_MAX:
                issues.append(
                    Issue(
                        field=f"{label.where}{text_field}.{locale}",
                        reason=f"{full!r} has {len(full)} characters; a Telegram button "
                        f"label allows {TELEGRAM_LABEL_MAX}",
                    )
                )
            if label.short is None:
                if len(full) > limit:
                    issues.append(
                        Issue(
                            field=f"{label.where}{text_field}.{locale}",
                            reason=f"{full!r} has {len(full)} characters; a WhatsApp {kind} "
                            f"allows {limit}: add a 'short' label",
                        )
                    )
                continue
            short = label.short.get(locale)
            if len(short) > limit:
                issues.append(
                    Issue(
                        field=f"{label.where}.short.{locale}",
                        reason=f"{short!r} has {len(short)} characters; a WhatsApp {kind} "
                        f"allows {limit}",
                    )
                )
            if not as_buttons and len(full) > WHATSAPP_ROW_DESCRIPTION_MAX:
                issues.append(
                    Issue(
                        field=f"{label.where}{text_field}.{locale}",
                        reason=f"{full!r} has {len(full)} characters; a WhatsApp list-row "
                        f"description allows {WHATSAPP_ROW_DESCRIPTION_MAX}",
                    )
                )
