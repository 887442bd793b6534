"""annotation.label_studio without a server: the generated label config, task payloads, and answers both ways.

The same functions are exercised against a real Label Studio in test_label_studio_server.py.
"""

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from annotation.label_studio import (
    INPUT_TAG,
    answer_from_result,
    instructions_html,
    label_config,
    project_title,
    result_from_answer,
    task_payload,
)
from annotation.schema import SchemaError, schema_clean

NASTY = "<script>alert('x')</script> & \"quotes\""

SCHEMA = schema_clean(
    {
        "instructions": "Correct the reply.\nSee <b>the guide</b> & ask.",
        "fields": [
            {"name": "reply", "kind": "text", "title": f"Reply {NASTY}", "writes": "target"},
            {"name": "note", "kind": "text", "title": "Note", "required": False},
            {
                "name": "team",
                "kind": "choice",
                "title": "Route to",
                "writes": "label",
                "options": ["Billing & Co", NASTY, "it's", "Price in $USD"],
            },
            {
                "name": "tags",
                "kind": "choice",
                "title": "Tags",
                "options": ["urgent", "<b>vip</b>"],
                "multiple": True,
                "required": False,
            },
            {
                "name": "quality",
                "kind": "rating",
                "title": "Quality",
                "scale": 4,
                "required": False,
                "rubric": {"1": "Wrong <i>or</i> rude", "4": "Send as is"},
            },
        ],
    }
)


def _tree(schema=SCHEMA) -> ET.Element:
    return ET.fromstring(label_config(schema))  # noqa: S314 (our own generated XML)


def test_the_module_imports_no_django():
    code = "import sys, annotation.label_studio; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_config_shows_the_example_and_the_target_and_one_control_per_field():
    root = _tree()
    assert root.tag == "View"
    texts = {el.get("name"): el.get("value") for el in root.iter("Text")}
    assert texts == {INPUT_TAG: "$input", "Target": "$target"}
    controls = [(el.tag, el.get("name")) for el in root if el.tag in ("TextArea", "Choices", "Rating")]
    assert controls == [
        ("TextArea", "reply"),
        ("TextArea", "note"),
        ("Choices", "team"),
        ("Choices", "tags"),
        ("Rating", "quality"),
    ]
    assert all(el.get("toName") == INPUT_TAG for el in root if el.tag in ("TextArea", "Choices", "Rating"))


def test_only_the_field_that_writes_the_target_is_prefilled_with_it():
    areas = {el.get("name"): el for el in _tree().iter("TextArea")}
    assert areas["reply"].get("value") == "$target"
    assert areas["note"].get("value") is None
    assert areas["reply"].get("required") == "true" and areas["note"].get("required") == "false"


def test_choices_single_and_multiple_with_the_schema_hotkeys():
    choices = {el.get("name"): el for el in _tree().iter("Choices")}
    assert choices["team"].get("choice") == "single"
    assert choices["tags"].get("choice") == "multiple"
    team = [(c.get("value"), c.get("hotkey")) for c in choices["team"]]
    assert team == [("Billing & Co", "1"), (NASTY, "2"), ("it's", "3"), ("Price in $USD", "4")]
    assert [(c.get("value"), c.get("hotkey")) for c in choices["tags"]] == [("urgent", "q"), ("<b>vip</b>", "w")]


def test_rating_scale_and_rubric():
    root = _tree()
    (rating,) = root.iter("Rating")
    assert rating.get("maxRating") == "4"
    headers = [el.get("value") for el in root.iter("Header")]
    assert "1: Wrong <i>or</i> rude" in headers and "4: Send as is" in headers


def test_markup_in_titles_and_options_stays_text():
    xml = label_config(SCHEMA)
    assert "<script>" not in xml and "<b>" not in xml and "<i>" not in xml
    root = ET.fromstring(xml)  # noqa: S314 (our own generated XML)
    # Parsed back, every label is exactly what the curator typed (one element each, no injected tags).
    assert [el.tag for el in root.iter() if el.tag in ("script", "b", "i")] == []
    headers = [el.get("value") for el in root.iter("Header")]
    assert f"Reply {NASTY}" in headers


def test_a_dollar_in_a_title_is_not_taken_for_task_data():
    schema = schema_clean(
        {"fields": [{"name": "cost", "kind": "choice", "title": "Cost in $target", "options": ["$5", "$target"]}]}
    )
    root = _tree(schema)
    header = next(el.get("value") for el in root.iter("Header") if "Cost" in el.get("value"))
    assert "$target" not in header and header.replace("\u200b", "") == "Cost in $target"
    # Option values are data, stored as typed.
    assert [c.get("value") for c in root.iter("Choice")] == ["$5", "$target"]


def test_no_target_text_without_a_text_field():
    schema = schema_clean({"fields": [{"name": "label", "kind": "choice", "options": ["a", "b"], "writes": "label"}]})
    root = _tree(schema)
    assert [el.get("value") for el in root.iter("Text")] == ["$input"]
    assert not list(root.iter("TextArea"))


def test_instructions_are_escaped_html():
    assert instructions_html(SCHEMA) == "Correct the reply.<br>See &lt;b&gt;the guide&lt;/b&gt; &amp; ask."


def test_project_title_fits_label_studio_limits():
    assert project_title("  Support replies  ") == "Support replies"
    assert len(project_title("x" * 120)) == 50
    assert project_title("ab") == "Tuning Desk: ab"


def test_task_payload_carries_our_task_id_in_data_and_meta():
    assert task_payload(task_id=7, input="<b>hi</b>", target="t") == {
        "data": {"input": "<b>hi</b>", "target": "t", "td_task_id": 7},
        "meta": {"td_task_id": 7},
    }


@pytest.mark.parametrize(
    "answer",
    [
        {"reply": "A <b>better</b> reply & more", "team": NASTY},
        {"reply": "Two\nlines", "note": "n", "team": "it's", "tags": ["urgent", "<b>vip</b>"], "quality": 4},
        {"reply": "r", "team": "Price in $USD", "tags": ["<b>vip</b>"], "quality": 1},
    ],
)
def test_answer_round_trip(answer):
    result = result_from_answer(SCHEMA, answer)
    assert answer_from_result(SCHEMA, result) == answer


def test_result_shape_is_what_label_studio_stores():
    result = result_from_answer(SCHEMA, {"reply": "r", "team": "it's", "tags": ["urgent"], "quality": 3})
    assert result == [
        {"from_name": "reply", "to_name": INPUT_TAG, "type": "textarea", "value": {"text": ["r"]}},
        {"from_name": "team", "to_name": INPUT_TAG, "type": "choices", "value": {"choices": ["it's"]}},
        {"from_name": "tags", "to_name": INPUT_TAG, "type": "choices", "value": {"choices": ["urgent"]}},
        {"from_name": "quality", "to_name": INPUT_TAG, "type": "rating", "value": {"rating": 3}},
    ]


def test_multiple_choices_come_back_in_schema_order():
    result = [
        {"from_name": "tags", "type": "choices", "value": {"choices": ["<b>vip</b>", "urgent"]}},
        {"from_name": "reply", "type": "textarea", "value": {"text": ["r"]}},
        {"from_name": "team", "type": "choices", "value": {"choices": ["it's"]}},
    ]
    assert answer_from_result(SCHEMA, result)["tags"] == ["urgent", "<b>vip</b>"]


def test_a_choice_not_in_the_schema_is_refused_in_plain_words():
    result = result_from_answer(SCHEMA, {"reply": "r", "team": "it's"})
    result[1]["value"]["choices"] = ["Sales"]
    with pytest.raises(SchemaError) as caught:
        answer_from_result(SCHEMA, result)
    assert caught.value.errors == {
        "team": f"“Sales” is not an option of “Route to”; choose from Billing & Co, {NASTY}, it's, Price in $USD."
    }


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            [{"from_name": "sentiment", "type": "choices", "value": {"choices": ["x"]}}],
            "Label Studio sent an answer for “sentiment”, which this project does not ask.",
        ),
        (
            [{"from_name": "quality", "type": "choices", "value": {"choices": ["x"]}}],
            "Label Studio sent a “choices” answer for “Quality”, which expects rating.",
        ),
        (
            [
                {"from_name": "reply", "type": "textarea", "value": {"text": ["r"]}},
                {"from_name": "team", "type": "choices", "value": {"choices": ["it's", "Billing & Co"]}},
            ],
            "Choose one option for “Route to”.",
        ),
        ([{"from_name": "team", "type": "choices", "value": {"choices": ["it's"]}}], "“Reply"),
        (
            [
                {"from_name": "reply", "type": "textarea", "value": {"text": ["r"]}},
                {"from_name": "team", "type": "choices", "value": {"choices": ["it's"]}},
                {"from_name": "quality", "type": "rating", "value": {"rating": 9}},
            ],
            "“Quality” must be a whole number from 1 to 4.",
        ),
        ("not a list", "Label Studio sent an answer in a shape Tuning Desk does not know."),
    ],
)
def test_results_that_do_not_fit_are_refused(result, message):
    with pytest.raises(SchemaError) as caught:
        answer_from_result(SCHEMA, result)
    assert message in str(caught.value)
