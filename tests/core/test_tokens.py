"""Bearer tokens: where they come from, their digests and what each scope may do."""

from __future__ import annotations

import pytest

from camcount.config import ApiConfig, TokenConfig, parse_config
from camcount.errors import ConfigError
from camcount.http.tokens import (
    Caller,
    TokenCheck,
    forbidden,
    required_scope,
    resolve_digests,
    scoped_digest,
    token_digest,
)


def test_tokens_from_the_file_and_both_variables_keep_their_scope() -> None:
    api = ApiConfig(
        tokens=("plain", TokenConfig(token="viewer", scope="read"), TokenConfig(token="boss")),
        tokens_env="ADMINS",
        read_tokens_env="READERS",
    )
    digests = resolve_digests(api, {"ADMINS": " a1, ,a2 ", "READERS": "r1,r2,viewer"})
    check = TokenCheck(digests)
    scopes = {t: check.identify(t) for t in ("plain", "viewer", "boss", "a1", "a2", "r1", "r2")}
    assert {t: c.scope for t, c in scopes.items() if c is not None} == {
        "plain": "admin",  # a plain string keeps the power it had before scopes
        "viewer": "read",
        "boss": "admin",
        "a1": "admin",
        "a2": "admin",
        "r1": "read",
        "r2": "read",
    }
    assert scopes["r1"] == Caller(token_digest("r1")[:8], "read")
    assert check.identify("r3") is None and check.identify("") is None
    assert not any("viewer" in d or "r1" in d for d in digests)  # never the tokens themselves


def test_a_token_given_both_scopes_is_admin() -> None:
    api = ApiConfig(tokens=(TokenConfig(token="t", scope="read"),), tokens_env="A")
    check = TokenCheck(resolve_digests(api, {"A": "t"}))
    assert check.identify("t") == Caller(token_digest("t")[:8], "admin")


def test_digests_deployed_before_scopes_are_admin() -> None:
    check = TokenCheck([token_digest("old"), scoped_digest("new", "read")])
    assert check.identify("old") == Caller(token_digest("old")[:8], "admin")
    assert check.verify("new") == token_digest("new")[:8]
    with pytest.raises(ValueError, match="unknown token scope 'root'"):
        TokenCheck([f"root:{token_digest('x')}"])


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("GET", "read"),
        ("head", "read"),
        ("OPTIONS", "read"),
        ("POST", "admin"),
        ("PATCH", "admin"),
        ("DELETE", "admin"),
        ("PUT", "admin"),
    ],
)
def test_writes_need_admin_reads_need_read(method: str, scope: str) -> None:
    assert required_scope(method) == scope
    reader, admin = Caller("r", "read"), Caller("a", "admin")
    assert forbidden(admin, method) is None
    refusal = forbidden(reader, method)
    if scope == "read":
        assert refusal is None
    else:
        assert refusal == f"this token may only read: {method} needs an admin token"


def test_a_token_entry_in_the_file_names_its_scope() -> None:
    text = "api:\n  tokens:\n    - plain\n    - {token: viewer, scope: read}\n"
    assert parse_config(text).api.tokens == ("plain", TokenConfig(token="viewer", scope="read"))
    with pytest.raises(ConfigError, match="line 4") as bad:
        parse_config(text.replace("scope: read", "scope: root"))
    assert "scope" in str(bad.value)
