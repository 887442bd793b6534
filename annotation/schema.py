"""Label schemas and answers: plain Python, no Django.

A schema is what annotators fill in for one example, as JSON::

    {"instructions": "Write the reply you would send ...",
     "fields": [
        {"name": "reply", "kind": "text", "title": "Reply to the client", "writes": "target", "required": true},
        {"name": "team", "kind": "choice", "title": "Route to", "options": ["Billing", "Technical"],
         "multiple": false, "writes": "label", "required": true},
        {"name": "quality", "kind": "rating", "title": "Quality of the original reply", "scale": 5,
         "rubric": {"1": "Wrong or rude", "5": "Could be sent as is"}, "required": false}]}

- ``kind``: ``text`` (write or correct the target), ``choice`` (one option, or several with ``multiple``), ``rating``
  (1..``scale``, with an optional rubric per score).
- ``writes``: where the settled answer goes in the new dataset version: ``target`` (a text field), ``label`` (a
  single choice), or nothing: then it is kept in the example's metadata under ``annotation.<name>``.

An answer is ``{field name: value}``: a string for text and single choice, a list of options (in schema order) for
multiple choice, an int for rating. ``answer_clean`` is the one place answers are checked, whether they come from the
browser, the REST API or Label Studio.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from statistics import median
from typing import Any

KINDS = ("text", "choice", "rating")
WRITES = ("", "target", "label")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FIELDS = 10
MAX_OPTIONS = 30
MAX_OPTION_CHARS = 100
MAX_TEXT_CHARS = 20_000
MAX_INSTRUCTIONS_CHARS = 10_000
# Keys for the options of the first, second and third choice or rating field; Enter, S and U are taken by
# submit, skip and undo, so no row below holds them.
HOTKEY_ROWS = ("123456789", "qwertyiop", "adfghjkl;")
# Two free-text answers that are this similar (ROUGE-L F1) or more count as agreeing.
TEXT_AGREE = 0.6


class SchemaError(ValueError):
    """Bad schema or answer; ``errors`` maps a field name (or ``__all__``) to one plain sentence."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__(
            "; ".join(f"{key}: {message}" if key != "__all__" else message for key, message in errors.items())
        )


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise SchemaError({"__all__": f"{what} must be text."})
    value = value.strip()
    if len(value) > limit:
        raise SchemaError({"__all__": f"{what} is longer than {limit:,} characters."})
    return value


def _choice_field_clean(raw: dict, name: str, writes: str) -> dict:
    """A choice field's own keys: its options (non-empty, distinct, at most MAX_OPTIONS) and ``multiple``."""
    options = raw.get("options")
    if not isinstance(options, list) or not options:
        raise SchemaError({name: "A choice field needs a list of options."})
    cleaned = [_text(option, f"An option of “{name}”", MAX_OPTION_CHARS) for option in options]
    if any(not option for option in cleaned):
        raise SchemaError({name: "Options cannot be empty."})
    if len(cleaned) > MAX_OPTIONS:
        raise SchemaError({name: f"At most {MAX_OPTIONS} options."})
    repeated = [option for option, n in Counter(cleaned).items() if n > 1]
    if repeated:
        raise SchemaError({name: f"The option “{repeated[0]}” is listed twice."})
    multiple = bool(raw.get("multiple", False))
    if writes == "target":
        raise SchemaError({name: "A choice field cannot write the target text; use a free-text field."})
    if writes == "label" and multiple:
        raise SchemaError({name: "Only a single-choice field can write the label."})
    return {"options": cleaned, "multiple": multiple}


def _rating_field_clean(raw: dict, name: str, writes: str) -> dict:
    """A rating field's own keys: its scale (2 to 10) and a rubric of descriptions by score, in score order."""
    scale = raw.get("scale", 5)
    if not isinstance(scale, int) or isinstance(scale, bool) or not 2 <= scale <= 10:
        raise SchemaError({name: "The rating scale must be a whole number from 2 to 10."})
    if writes:
        raise SchemaError({name: "A rating is kept in the example's metadata; leave “writes” empty."})
    rubric = raw.get("rubric") or {}
    if not isinstance(rubric, dict):
        raise SchemaError({name: "The rubric must map scores to descriptions."})
    cleaned_rubric = {}
    for score, text in rubric.items():
        if not str(score).isdigit() or not 1 <= int(score) <= scale:
            raise SchemaError({name: f"The rubric names score {score}, outside 1–{scale}."})
        cleaned_rubric[str(int(score))] = _text(text, f"The rubric of “{name}”", 500)
    return {"scale": scale, "rubric": dict(sorted(cleaned_rubric.items(), key=lambda item: int(item[0])))}


def _field_clean(raw: object, index: int) -> dict:
    if not isinstance(raw, dict):
        raise SchemaError({"__all__": f"Field {index + 1} must be an object with a name and a kind."})
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SchemaError(
            {
                "__all__": f"Field {index + 1}: the name must start with a small letter and hold only "
                "small letters, digits and _ (at most 40)."
            }
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SchemaError({name: f"Unknown kind “{kind}”; choose {', '.join(KINDS)}."})
    title = _text(raw.get("title") or name.replace("_", " ").capitalize(), f"The title of “{name}”", 200)
    writes = raw.get("writes") or ""
    if writes not in WRITES:
        raise SchemaError({name: f"“writes” must be target, label or empty, not “{writes}”."})
    field: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "title": title,
        "writes": writes,
        "required": bool(raw.get("required", True)),
    }
    if kind == "text":
        if writes == "label":
            raise SchemaError({name: "A free-text field cannot write the label; use a choice field."})
    elif kind == "choice":
        field.update(_choice_field_clean(raw, name, writes))
    else:
        field.update(_rating_field_clean(raw, name, writes))
    return field


def schema_clean(raw: object) -> dict:
    """A checked, normalised copy of a schema, or SchemaError with a sentence a curator can act on."""
    if not isinstance(raw, dict):
        raise SchemaError({"__all__": "The schema must be an object with instructions and fields."})
    instructions = _text(raw.get("instructions") or "", "The instructions", MAX_INSTRUCTIONS_CHARS)
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, list) or not fields_raw:
        raise SchemaError({"__all__": "Add at least one field for annotators to fill in."})
    if len(fields_raw) > MAX_FIELDS:
        raise SchemaError({"__all__": f"At most {MAX_FIELDS} fields."})
    fields = [_field_clean(raw_field, index) for index, raw_field in enumerate(fields_raw)]
    names = Counter(field["name"] for field in fields)
    if any(n > 1 for n in names.values()):
        raise SchemaError({"__all__": f"Two fields are named “{next(k for k, n in names.items() if n > 1)}”."})
    for target in ("target", "label"):
        if sum(field["writes"] == target for field in fields) > 1:
            raise SchemaError({"__all__": f"Only one field can write the {target}."})
    keyed = [field for field in fields if field["kind"] != "text"]
    if len(keyed) > len(HOTKEY_ROWS):
        raise SchemaError({"__all__": f"At most {len(HOTKEY_ROWS)} choice or rating fields (one row of keys each)."})
    for field, row in zip(keyed, HOTKEY_ROWS, strict=False):
        count = len(field["options"]) if field["kind"] == "choice" else field["scale"]
        if count > len(row):
            raise SchemaError({field["name"]: f"At most {len(row)} options here, one key each."})
    return {"instructions": instructions, "fields": fields}


def hotkeys(schema: dict) -> dict[str, dict[str, str]]:
    """{field name: {option (or score as text): key}} for the choice and rating fields, in schema order."""
    keys = {}
    for field, row in zip((f for f in schema["fields"] if f["kind"] != "text"), HOTKEY_ROWS, strict=False):
        values = field["options"] if field["kind"] == "choice" else [str(n) for n in range(1, field["scale"] + 1)]
        keys[field["name"]] = dict(zip(values, row, strict=False))
    return keys


# The answer checkers below take a field's non-empty value and return (clean value, "") or (None, a sentence);
# (None, "") leaves the field out of the answer.


def _text_answer(field: dict, value: object, *, partial: bool) -> tuple[object, str]:
    title = field["title"]
    if not isinstance(value, str):
        return None, f"“{title}” must be text."
    if len(value) > MAX_TEXT_CHARS:
        return None, f"“{title}” is longer than {MAX_TEXT_CHARS:,} characters."
    if value.strip() or partial:
        return (value if partial else value.strip()), ""
    return None, f"“{title}” is required." if field["required"] else ""


def _choice_answer(field: dict, value: object, *, partial: bool) -> tuple[object, str]:
    title = field["title"]
    chosen = value if isinstance(value, list) else [value]
    if not all(isinstance(option, str) for option in chosen):
        return None, f"“{title}” takes option names."
    outside = [option for option in chosen if option not in field["options"]]
    if outside:
        return None, f"“{outside[0]}” is not an option of “{title}”; choose from {', '.join(field['options'])}."
    if not field["multiple"] and len(chosen) != 1:
        return None, f"Choose one option for “{title}”."
    return ([option for option in field["options"] if option in chosen] if field["multiple"] else chosen[0]), ""


def _rating_answer(field: dict, value: object, *, partial: bool) -> tuple[object, str]:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= field["scale"]:
        return None, f"“{field['title']}” must be a whole number from 1 to {field['scale']}."
    return value, ""


def answer_clean(schema: dict, raw: object, *, partial: bool = False) -> dict:
    """A checked answer in canonical form. ``partial`` (drafts) allows missing fields; a label outside the schema,
    a rating off the scale or an unknown field is refused either way."""
    if not isinstance(raw, dict):
        raise SchemaError({"__all__": "The answer must be an object of field names and values."})
    fields = {field["name"]: field for field in schema["fields"]}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SchemaError({"__all__": f"This project has no field “{unknown[0]}”."})
    answer: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, field in fields.items():
        value = raw.get(name)
        empty = value is None or value == "" or value == []
        if empty:
            if field["required"] and not partial:
                errors[name] = f"“{field['title']}” is required."
            continue
        clean = {"text": _text_answer, "choice": _choice_answer}.get(field["kind"], _rating_answer)
        cleaned, error = clean(field, value, partial=partial)
        if error:
            errors[name] = error
        elif cleaned is not None:
            answer[name] = cleaned
    if errors:
        raise SchemaError(errors)
    return answer


def comparable(field: dict, value: object) -> object:
    """An answer value as a hashable label for agreement: multiple choices become one sorted " | " label."""
    if value is None or value == [] or value == "":
        return None
    if field["kind"] == "choice" and isinstance(value, list):
        return " | ".join(value)
    return value


def agreement_kind(field: dict) -> str:
    return {"text": "text", "choice": "choice", "rating": "rating"}[field["kind"]]


def _text_medoid(texts: list[str], similarity) -> tuple[str, float]:
    """The text most similar to the others, and the mean pairwise similarity of all of them."""
    if len(texts) == 1:
        return texts[0], 1.0
    scores = {(i, j): similarity(texts[i], texts[j]) for i in range(len(texts)) for j in range(i + 1, len(texts))}

    def mean_to_others(i: int) -> float:
        return sum(score for pair, score in scores.items() if i in pair) / (len(texts) - 1)

    best = max(range(len(texts)), key=lambda i: (mean_to_others(i), -i))
    return texts[best], sum(scores.values()) / len(scores)


def resolve(schema: dict, answers: list[dict], *, similarity=None) -> tuple[dict, list[str]]:
    """The consensus answer of several annotators and the names of the fields they disagree on.

    Choice and multiple choice: the strict majority (more than half); rating: the majority, or, when all scores lie
    within one point, the median (the lower score when it falls between two); text: the answer most similar to the
    others, agreed when the mean pairwise ROUGE-L F1 reaches ``TEXT_AGREE``. A field on which they disagree has no
    consensus value and needs a reviewer.
    """
    if similarity is None:
        from annotation.agreement import text_similarity as similarity
    consensus: dict[str, Any] = {}
    disagreements: list[str] = []
    for field in schema["fields"]:
        name = field["name"]
        values = [answer[name] for answer in answers if answer.get(name) not in (None, "", [])]
        if not values:
            if field["required"] and answers:
                disagreements.append(name)
            continue
        if field["kind"] == "text":
            text, agreement = _text_medoid(values, similarity)
            if agreement >= TEXT_AGREE:
                consensus[name] = text
            else:
                disagreements.append(name)
            continue
        labels = [comparable(field, value) for value in values]
        top, count = Counter(labels).most_common(1)[0]
        if count * 2 > len(labels):
            consensus[name] = next(value for value, label in zip(values, labels, strict=True) if label == top)
        elif field["kind"] == "rating" and max(values) - min(values) <= 1:
            consensus[name] = math.floor(median(values))  # between two scores, the more critical one
        else:
            disagreements.append(name)
    return consensus, disagreements


def matches(field: dict, a: object, b: object, *, similarity=None) -> bool:
    """Whether two values of one field agree (gold checks): equal labels, or similar enough texts."""
    if field["kind"] == "text":
        if similarity is None:
            from annotation.agreement import text_similarity as similarity
        return bool(a) and bool(b) and similarity(str(a), str(b)) >= TEXT_AGREE
    return comparable(field, a) == comparable(field, b)
