"""The 404 page people see (debug off), and page addresses typed with a trailing slash."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug_off(settings: Any) -> None:
    """As in production: Django renders templates/404.html, not its technical page."""
    settings.DEBUG = False


def assert_page_not_found(response: Any, path: str) -> None:
    assert response.status_code == 404
    text = response.content.decode()
    assert "<h1>Page not found</h1>" in text
    assert f"There is no page at <code>{path}</code>." in text
    assert '<a class="btn" href="/">Back to your executions</a>' in text
    # Never an exception's class name or Django's internals.
    for leak in ("Resolver404", "Http404", "Traceback", "urlpatterns", "tried"):
        assert leak not in text


def test_an_unknown_address_says_page_not_found(alice_page: Client) -> None:
    assert_page_not_found(alice_page.get("/no/such/page"), "/no/such/page")


def test_an_anonymous_visitor_gets_the_same_page(client: Client) -> None:
    assert_page_not_found(client.get("/no-such-page"), "/no-such-page")


def test_someone_elses_execution_is_not_found_in_the_same_words(
    bob_page: Client, alice: Any, make_execution: Any
) -> None:
    execution = make_execution(alice, "running")
    assert_page_not_found(bob_page.get(f"/executions/{execution.id}"), f"/executions/{execution.id}")


def test_the_path_shown_is_escaped(alice_page: Client) -> None:
    response = alice_page.get("/<script>alert(1)</script>")
    assert response.status_code == 404
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_an_execution_page_with_a_trailing_slash_redirects_to_the_page(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    execution = make_execution(alice, "running")
    response = alice_page.get(f"/executions/{execution.id}/")
    assert response.status_code == 301
    assert response["Location"] == f"/executions/{execution.id}"
    assert alice_page.get(response["Location"]).status_code == 200


def test_the_start_page_with_a_trailing_slash_keeps_its_query(alice_page: Client) -> None:
    response = alice_page.head("/executions/new/?target=pipeline:demo_steps")
    assert response.status_code == 301
    assert response["Location"] == "/executions/new?target=pipeline:demo_steps"


def test_the_redirect_is_for_reading_only(alice_page: Client) -> None:
    """A form posts to the address without the slash; a redirected POST would lose its body."""
    response = alice_page.post("/executions/new/", {"target": "pipeline:demo_steps"})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_the_redirect_does_not_reveal_whether_an_execution_exists(bob_page: Client) -> None:
    """Any id redirects (the page itself then answers 404), so the slash tells nothing."""
    response = bob_page.get("/executions/exec_000000000000/")
    assert response.status_code == 301
    assert_page_not_found(bob_page.get(response["Location"]), "/executions/exec_000000000000")


def test_other_addresses_with_a_slash_are_not_redirected(alice_page: Client) -> None:
    assert_page_not_found(alice_page.get("/executions/"), "/executions/")
    assert_page_not_found(alice_page.get("/accounts/nope/"), "/accounts/nope/")
    assert alice_page.get("/executions/exec_000000000000/cancel/").status_code == 404


def test_the_api_serves_both_forms_without_redirecting(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    for path in (f"/api/v1/executions/{execution.id}", f"/api/v1/executions/{execution.id}/"):
        response = alice_page.get(path)
        assert response.status_code == 200, path
        assert response.json()["execution_id"] == execution.id
