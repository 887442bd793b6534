"""annotation.schema: schemas and answers are checked in one place, consensus per kind of field."""

import pytest

from annotation.schema import SchemaError, answer_clean, hotkeys, matches, resolve, schema_clean

SCHEMA = schema_clean(
    {
        "instructions": "  Rate and route.  ",
        "fields": [
            {"name": "reply", "kind": "text", "writes": "target"},
            {
                "name": "team",
                "kind": "choice",
                "options": ["Billing", "Technical", "<img src=x onerror=alert(1)>"],
                "writes": "label",
            },
            {"name": "tags", "kind": "choice", "options": ["urgent", "angry"], "multiple": True, "required": False},
            {
                "name": "quality",
                "kind": "rating",
                "scale": 5,
                "rubric": {"5": "Send as is", "1": "Wrong"},
                "required": False,
            },
        ],
    }
)


def test_schema_is_normalised_with_titles_and_sorted_rubric():
    assert SCHEMA["instructions"] == "Rate and route."
    reply, team, tags, quality = SCHEMA["fields"]
    assert reply["title"] == "Reply" and reply["required"] is True
    assert tags["multiple"] is True and team["multiple"] is False
    assert list(quality["rubric"]) == ["1", "5"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fields": []}, "at least one field"),
        ({"fields": [{"name": "Team", "kind": "choice", "options": ["a"]}]}, "small letter"),
        ({"fields": [{"name": "t", "kind": "slider"}]}, "Unknown kind"),
        ({"fields": [{"name": "t", "kind": "choice", "options": ["a", "a"]}]}, "listed twice"),
        ({"fields": [{"name": "t", "kind": "choice", "options": ["a", " "]}]}, "cannot be empty"),
        ({"fields": [{"name": "t", "kind": "rating", "scale": 11}]}, "2 to 10"),
        ({"fields": [{"name": "t", "kind": "rating", "rubric": {"7": "x"}}]}, "outside 1–5"),
        ({"fields": [{"name": "t", "kind": "text", "writes": "label"}]}, "cannot write the label"),
        (
            {"fields": [{"name": "t", "kind": "choice", "options": ["a"], "multiple": True, "writes": "label"}]},
            "single-choice",
        ),
        (
            {
                "fields": [
                    {"name": "a", "kind": "text", "writes": "target"},
                    {"name": "b", "kind": "text", "writes": "target"},
                ]
            },
            "Only one field",
        ),
        ({"fields": [{"name": "a", "kind": "text"}, {"name": "a", "kind": "text"}]}, "Two fields"),
        ({"fields": [{"name": "t", "kind": "choice", "options": [str(n) for n in range(10)]}]}, "one key each"),
        ("not a dict", "must be an object"),
    ],
)
def test_bad_schemas_get_a_plain_message(raw, message):
    with pytest.raises(SchemaError, match=message):
        schema_clean(raw)


def test_hotkeys_give_each_choice_and_rating_field_its_own_row():
    keys = hotkeys(SCHEMA)
    assert keys["team"] == {"Billing": "1", "Technical": "2", "<img src=x onerror=alert(1)>": "3"}
    assert keys["tags"] == {"urgent": "q", "angry": "w"}
    assert keys["quality"] == {"1": "a", "2": "d", "3": "f", "4": "g", "5": "h"}
    used = {key for field in keys.values() for key in field.values()}
    assert not used & {"s", "u"}  # skip and undo


def test_answer_is_cleaned_to_canonical_form():
    answer = answer_clean(
        SCHEMA, {"reply": "  Sorry!  ", "team": "Billing", "tags": ["angry", "urgent"], "quality": "4"}
    )
    assert answer == {"reply": "Sorry!", "team": "Billing", "tags": ["urgent", "angry"], "quality": 4}


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"reply": "x", "team": "Sales"}, "team", "not an option"),
        ({"reply": "x", "team": ["Billing", "Technical"]}, "team", "Choose one"),
        ({"reply": "x", "team": "Billing", "quality": 9}, "quality", "1 to 5"),
        ({"reply": "x", "team": "Billing", "quality": True}, "quality", "1 to 5"),
        ({"reply": "   ", "team": "Billing"}, "reply", "required"),
        ({"team": "Billing"}, "reply", "required"),
        ({"reply": 3, "team": "Billing"}, "reply", "must be text"),
        ({"reply": "x", "team": "Billing", "colour": "red"}, "__all__", "no field “colour”"),
    ],
)
def test_bad_answers_are_refused_per_field(raw, field, message):
    with pytest.raises(SchemaError) as caught:
        answer_clean(SCHEMA, raw)
    assert message in caught.value.errors[field]


def test_drafts_may_be_partial_but_not_wrong():
    assert answer_clean(SCHEMA, {"reply": "half a sent"}, partial=True) == {"reply": "half a sent"}
    with pytest.raises(SchemaError):
        answer_clean(SCHEMA, {"team": "Sales"}, partial=True)


def test_html_in_labels_is_just_text():
    assert answer_clean(SCHEMA, {"reply": "<script>x</script>", "team": "<img src=x onerror=alert(1)>"}) == {
        "reply": "<script>x</script>",
        "team": "<img src=x onerror=alert(1)>",
    }


def test_resolve_majority_median_and_text_similarity():
    same_text = "We refunded the duplicate charge; it shows in 3 days."
    consensus, disagreements = resolve(
        SCHEMA,
        [
            {"reply": same_text, "team": "Billing", "quality": 4, "tags": ["urgent"]},
            {"reply": same_text + " Sorry!", "team": "Billing", "quality": 5, "tags": ["urgent"]},
            {"reply": same_text, "team": "Technical", "quality": 4, "tags": ["angry"]},
        ],
    )
    assert disagreements == []
    assert consensus == {"reply": same_text, "team": "Billing", "tags": ["urgent"], "quality": 4}


def test_resolve_reports_ties_and_different_texts():
    consensus, disagreements = resolve(
        SCHEMA,
        [
            {"reply": "Please restart the router.", "team": "Billing", "quality": 1},
            {"reply": "Your refund was approved yesterday.", "team": "Technical", "quality": 5},
        ],
    )
    assert disagreements == ["reply", "team", "quality"]
    assert consensus == {}


def test_ratings_one_point_apart_agree_on_the_lower():
    consensus, disagreements = resolve(
        SCHEMA, [{"reply": "Hi", "team": "Billing", "quality": 3}, {"reply": "Hi", "team": "Billing", "quality": 4}]
    )
    assert (consensus["quality"], disagreements) == (3, [])
    _, disagreements = resolve(
        SCHEMA, [{"reply": "Hi", "team": "Billing", "quality": 3}, {"reply": "Hi", "team": "Billing", "quality": 5}]
    )
    assert disagreements == ["quality"]


def test_a_single_answer_is_its_own_consensus():
    consensus, disagreements = resolve(SCHEMA, [{"reply": "Hi", "team": "Billing"}])
    assert (consensus, disagreements) == ({"reply": "Hi", "team": "Billing"}, [])


def test_gold_matching():
    team = SCHEMA["fields"][1]
    reply = SCHEMA["fields"][0]
    assert matches(team, "Billing", "Billing") and not matches(team, "Billing", "Technical")
    assert matches(reply, "We refunded the charge today.", "We refunded the charge today!")
    assert not matches(reply, "", "anything")
