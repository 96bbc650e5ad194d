"""``camcount token``: a token an operator can keep, printed alone on stdout so
that ``export CAMCOUNT_API_TOKENS="$(camcount token)"`` works."""

from __future__ import annotations

import re

import pytest

from camcount.cli import main


def test_token_prints_one_fresh_url_safe_token(capsys: pytest.CaptureFixture[str]) -> None:
    tokens = []
    for _ in range(2):
        assert main(["token"]) == 0
        out, errtext = capsys.readouterr()
        assert out.endswith("\n") and out.count("\n") == 1
        tokens.append(out.strip())
        assert "CAMCOUNT_API_TOKENS" in errtext
    for token in tokens:
        # 32 random bytes: no comma (the env variable's separator), no space.
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert tokens[0] != tokens[1]


def test_a_read_token_is_told_where_read_tokens_go(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--scope", "read"]) == 0
    out, errtext = capsys.readouterr()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", out)
    assert "CAMCOUNT_API_READ_TOKENS" in errtext


def test_an_unknown_scope_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["token", "--scope", "write"])
    assert exc.value.code == 2
    assert "--scope" in capsys.readouterr().err
