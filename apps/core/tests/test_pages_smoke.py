from __future__ import annotations


def test_home_renders_for_signed_in_user(client_for, member_user):
    response = client_for(member_user).get("/")
    assert response.status_code == 200
    assert b"Team A" in response.content


def test_home_redirects_anonymous_to_login(client_for, db):
    response = client_for(None).get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
