"""Tokens: HS256 checks, and the memory of accepted tokens in front of them."""

from __future__ import annotations

import time

import pytest

from kefu import tokens
from kefu.core.model import Role
from kefu.store.base import Account
from kefu.tokens import TokenError, Verifier, issue

SECRET = "k" * 64


def _token(sub: str, ttl: int = 3600) -> str:
    return issue(SECRET, Account(sub, sub, Role.USER, None, "", None), ttl)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature is checked."""
    seen: list[str] = []
    real = tokens.verify

    def counting(secret: str, token: str) -> tokens.Claims:
        seen.append(token)
        return real(secret, token)

    monkeypatch.setattr(tokens, "verify", counting)
    return seen


def test_an_accepted_token_is_not_checked_again(checks: list[str]) -> None:
    verifier = Verifier(SECRET)
    token = _token("alice")
    first = verifier(token)
    again = verifier(token)
    assert first == again and first.sub == "alice"
    assert checks == [token]


def test_refused_tokens_are_checked_every_time(checks: list[str]) -> None:
    verifier = Verifier(SECRET)
    good = _token("bob")
    verifier(good)
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(TokenError):
            verifier(forged)
    with pytest.raises(TokenError):
        verifier(issue("another secret" * 4, Account("bob", "bob", Role.USER, None, "", None), 60))
    assert checks.count(forged) == 2


def test_a_remembered_token_still_expires() -> None:
    verifier = Verifier(SECRET)
    token = _token("carol", ttl=1)
    claims = verifier(token)
    time.sleep(max(0.0, claims.exp - time.time()) + 0.05)
    with pytest.raises(TokenError, match="expired"):
        verifier(token)


def test_expiry_is_read_from_the_clock_for_remembered_tokens(checks: list[str]) -> None:
    now = [time.time()]
    verifier = Verifier(SECRET, clock=lambda: now[0])
    token = _token("dave", ttl=3600)
    claims = verifier(token)
    now[0] = claims.exp - 0.001
    verifier(token)
    assert len(checks) == 1
    now[0] = claims.exp  # past its time in the memory: checked again (still valid for PyJWT)
    verifier(token)
    assert len(checks) == 2


def test_the_memory_keeps_at_most_size_tokens(checks: list[str]) -> None:
    verifier = Verifier(SECRET, size=3)
    made = [_token(f"u{i}") for i in range(4)]
    for token in made:
        verifier(token)
    verifier(made[3])  # still remembered
    verifier(made[0])  # the oldest went first: checked again
    assert checks == [*made, made[0]]
