"""Paging values of the REST lists: capped, checked, never a 500 and never the whole table (projectsite/pagination.py).

As found: ``?limit=155458847162050412544`` on datasets/, datasets/{id}/versions/, uploads/ and audit-events/ answered
500 (bigint out of range), ``limit=9223372036854775807`` returned the whole table, and ``page_size=null`` or
``offset=null`` were taken silently.
"""

import base64

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.generics import ListAPIView

from accounts.models import AuditEvent
from curation.models import Upload
from projectsite.pagination import INVALID_CURSOR, MAX_OFFSET, CursorPagination, LimitOffset
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory

HUGE = ("155458847162050412544", "9223372036854775807")
MAX = 2  # API_MAX_PAGE_SIZE in these tests, with 3 of everything: "the whole table" would be 3


@pytest.fixture
def lists(admin_user, settings):
    """The four lists of the finding, each with 3 entries an admin sees."""
    settings.API_MAX_PAGE_SIZE = MAX
    dataset = VersionFactory(number=1).dataset
    for number in (2, 3):
        VersionFactory(dataset=dataset, number=number)
    for _ in range(2):
        VersionFactory(dataset=DatasetFactory(), number=1)
    for index in range(3):
        Upload.objects.create(
            file=f"uploads/{index}.csv", original_name=f"{index}.csv", size=1, format="csv", dataset_name="Tickets"
        )
    AuditEvent.objects.all().delete()
    AuditEvent.objects.bulk_create(
        AuditEvent(action="test.event", object_type="test", object_id=str(index), object_repr=f"event {index}")
        for index in range(3)
    )
    return {
        "datasets": reverse("api-dataset-list"),
        "versions": reverse("api-dataset-versions", args=[dataset.pk]),
        "uploads": reverse("api-upload-list"),
        "audit-events": reverse("api-audit-events"),
    }


@pytest.fixture
def admin_api(api_client, admin_user):
    return api_client(admin_user)


def _size_param(url: str) -> str:
    return "page_size" if "audit-events" in url else "limit"


@pytest.mark.parametrize("name", ["datasets", "versions", "uploads", "audit-events"])
@pytest.mark.parametrize("value", HUGE)
def test_a_huge_limit_gives_one_capped_page_not_a_500_or_the_whole_table(lists, admin_api, name, value):
    url = lists[name]
    for param in {"limit", _size_param(url)}:
        response = admin_api.get(f"{url}?{param}={value}")
        assert response.status_code == 200, response.json()
        page = response.json()
        assert len(page["results"]) == MAX
        assert page["next"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("limit=abc", "limit", f"limit must be a whole number from 1 to {MAX}."),
        ("limit=null", "limit", f"limit must be a whole number from 1 to {MAX}."),
        ("limit=0", "limit", f"limit must be a whole number from 1 to {MAX}."),
        ("limit=-1", "limit", f"limit must be a whole number from 1 to {MAX}."),
        ("limit=1.5", "limit", f"limit must be a whole number from 1 to {MAX}."),
        ("offset=null", "offset", f"offset must be a whole number from 0 to {MAX_OFFSET}."),
        ("offset=-5", "offset", f"offset must be a whole number from 0 to {MAX_OFFSET}."),
        ("offset=99999999999999999999", "offset", f"offset must be a whole number from 0 to {MAX_OFFSET}."),
        (f"offset={MAX_OFFSET + 1}", "offset", f"offset must be a whole number from 0 to {MAX_OFFSET}."),
    ],
)
@pytest.mark.parametrize("name", ["datasets", "versions", "uploads"])
def test_limit_and_offset_that_are_not_whole_numbers_in_range_are_a_400(lists, admin_api, name, query, field, message):
    response = admin_api.get(f"{lists[name]}?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": message, "fields": {field: [message]}}


@pytest.mark.parametrize("query", ["page_size=null", "page_size=abc", "page_size=0", "page_size=-3"])
def test_a_page_size_that_is_not_a_whole_number_is_a_400(lists, admin_api, query):
    response = admin_api.get(f"{lists['audit-events']}?{query}")
    assert response.status_code == 400
    message = f"page_size must be a whole number from 1 to {MAX}."
    assert response.json() == {"error": message, "fields": {"page_size": [message]}}


def test_limit_and_offset_pages_follow_next_links_to_the_end(lists, admin_api):
    first = admin_api.get(f"{lists['versions']}?limit=1&offset=0").json()
    assert first["count"] == 3
    second = admin_api.get(first["next"]).json()
    third = admin_api.get(second["next"]).json()
    assert third["next"] is None
    assert [page["results"][0]["number"] for page in (first, second, third)] == [3, 2, 1]
    assert admin_api.get(f"{lists['versions']}?offset=3").json()["results"] == []


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "not-a-cursor",
        _cursor("p=abc"),
        _cursor("p=99999999999999999999999"),
        _cursor("o=-1"),
        _cursor("r=x"),
    ],
)
def test_a_cursor_this_api_did_not_make_is_a_400_that_says_what_to_do(admin_user, api_client, cursor):
    """Garbage and made-up positions (a word where the row number goes, a number past bigint: a 500 before)."""
    version = VersionFactory()
    ExampleFactory.create_batch(3, version=version)
    client = api_client(admin_user)
    for url in (reverse("api-version-examples", args=[version.pk]), reverse("api-audit-events")):
        response = client.get(url, {"cursor": cursor})
        assert response.status_code == 400, (url, response.content)
        assert response.json() == {"error": INVALID_CURSOR, "fields": {"cursor": [INVALID_CURSOR]}}


def test_cursor_pages_follow_next_links_and_an_empty_cursor_is_the_first_page(lists, admin_api):
    url = lists["audit-events"]
    first = admin_api.get(f"{url}?page_size=1&cursor=").json()
    seen = [row["object_id"] for row in first["results"]]
    page = first
    while page["next"]:
        page = admin_api.get(page["next"]).json()
        seen += [row["object_id"] for row in page["results"]]
    assert seen == ["2", "1", "0"]  # newest first, each once


def _list_views():
    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view = getattr(pattern.callback, "cls", None)
                if view is not None and issubclass(view, ListAPIView):
                    yield route, view

    return sorted(walk(get_resolver().url_patterns, ""))


def test_every_api_list_pages_in_one_of_the_two_documented_styles():
    """Every list answers pages with next links, checked as above: cursor pages or limit/offset (README)."""
    views = _list_views()
    assert len(views) > 20
    odd = [
        route
        for route, view in views
        if view.pagination_class is None or not issubclass(view.pagination_class, CursorPagination | LimitOffset)
    ]
    assert not odd, f"Lists without one of the two paginators of projectsite/pagination.py: {odd}"


def test_the_schema_documents_the_paging_parameters(client, make_user):
    client.force_login(make_user("annotator", username="reader"))
    schema = client.get("/api/schema/?format=json").json()
    examples = schema["paths"]["/api/v1/versions/{version_id}/examples/"]["get"]
    datasets = schema["paths"]["/api/v1/datasets/"]["get"]
    for operation, names in ((examples, {"cursor", "page_size"}), (datasets, {"limit", "offset"})):
        params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert names <= set(params)
    assert "at most 500" in {p["name"]: p for p in datasets["parameters"]}["limit"]["description"]
