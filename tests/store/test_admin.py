"""The account lifecycle and the API's keys in the store, on every backend (`harness`)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from kefu.core.commands import OpenConversation
from kefu.core.model import AccountKind, Role
from kefu.ids import IdGenerator, id_time
from kefu.store.base import (
    Account,
    AccountFilter,
    AccountUpdate,
    ApiKey,
    NameTaken,
    NewMessage,
    Store,
)

from .conftest import ALICE, BOB, CAROL, DAVE


async def _stored(store: Store, m: NewMessage) -> None:
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    store.append(m, done.set_result)
    assert not isinstance(await done, BaseException)


async def test_list_accounts_newest_first_with_filters_and_pages(
    store: Store, people: dict[str, Account]
) -> None:
    every = await store.list_accounts(AccountFilter(), None, 100)
    assert [a.id for a in every] == [DAVE.id, BOB.id, CAROL.id, ALICE.id]  # created in that order
    assert all(a.created_at is not None for a in every)
    first = await store.list_accounts(AccountFilter(), None, 3)
    rest = await store.list_accounts(AccountFilter(), first[-1].id, 3)
    assert [a.id for a in first + rest] == [a.id for a in every]
    waiters = await store.list_accounts(AccountFilter(role=Role.WAITER), None, 100)
    assert [a.id for a in waiters] == [DAVE.id, BOB.id]
    by_nickname = await store.list_accounts(AccountFilter(q="LIC"), None, 100)
    assert [a.id for a in by_nickname] == [ALICE.id]
    assert await store.list_accounts(AccountFilter(q="_"), None, 100) == []  # a literal "_"


async def test_update_changes_only_what_it_sets(store: Store, people: dict[str, Account]) -> None:
    changed = await store.update_account(
        BOB.id, AccountUpdate(nickname=None, role=Role.ADMIN, disabled_at=123.5)
    )
    assert changed is not None
    assert (changed.nickname, changed.role, changed.disabled_at) == (None, Role.ADMIN, 123.5)
    assert (changed.avatar, changed.password_hash, changed.username) == ("", "h1", "bob")
    again = await store.update_account(BOB.id, AccountUpdate(disabled_at=None, tokens_after=9.25))
    assert again is not None and again.disabled_at is None and again.tokens_after == 9.25
    assert again == await store.get_account(BOB.id)
    assert not again.accepts(9.0) and again.accepts(9.25) and not again.accepts(None)
    assert await store.update_account("nobody", AccountUpdate(nickname="x")) is None


async def test_erase_leaves_nothing_the_person_wrote(
    store: Store, people: dict[str, Account], new_id: IdGenerator
) -> None:
    cid = new_id()
    store.write(OpenConversation(cid, ALICE.id, BOB.id, id_time(cid)))
    written = [
        (ALICE.id, BOB.id, "message_text", {"text": "my address is 1 Main St"}),
        (ALICE.id, BOB.id, "message_image", {"image": "https://example.com/me.png"}),
        (BOB.id, ALICE.id, "message_text", {"text": "thanks"}),
    ]
    for sender, receiver, type_, payload in written:
        mid = new_id()
        raw = json.dumps(payload).encode()
        await _stored(store, NewMessage(mid, cid, type_, sender, receiver, raw, None, id_time(mid)))
    erased = await store.erase_account(ALICE.id, 50.0)
    assert erased is not None
    assert (erased.username, erased.nickname, erased.avatar) == (f"erased-{ALICE.id}", None, "")
    assert (erased.disabled_at, erased.tokens_after, erased.erased_at) == (50.0, 50.0, 50.0)
    assert erased.password_hash is None and erased.external_id is None
    history = await store.history(ALICE.id)
    assert [(h.sender.id, h.payload) for h in history] == [
        (BOB.id, {"text": "thanks"}),
        (ALICE.id, {"image": "", "erased": True}),
        (ALICE.id, {"text": "", "erased": True}),
    ]
    assert (await store.latest_conversation(ALICE.id)) is not None  # the record stays
    assert await store.erase_account(ALICE.id, 99.0) == erased  # idempotent, first times kept
    assert await store.erase_account("nobody", 1.0) is None


async def test_an_external_account_is_erased_out_of_its_namespace(store: Store) -> None:
    sub = f"host-{uuid.uuid4().hex[:8]}"
    await store.upsert_account(
        Account(sub, "hostie", Role.USER, kind=AccountKind.EXTERNAL, external_id=sub)
    )
    await store.erase_account(sub, 1.0)
    assert await store.get_external_account(sub) is None  # its next token makes a new account
    assert await store.get_account_by_username("hostie", AccountKind.EXTERNAL) is None


async def test_api_keys(store: Store, new_id: IdGenerator) -> None:
    name = f"ci-{uuid.uuid4().hex[:8]}"
    key = ApiKey(new_id(), name, "kefu_abcdefg", True, 10.0)
    digest = uuid.uuid4().hex * 2
    assert await store.create_api_key(key, digest) == key
    with pytest.raises(NameTaken):
        await store.create_api_key(ApiKey(new_id(), name, "kefu_x", False, 11.0), "f" * 64)
    assert await store.api_key_by_hash(digest) == key
    assert await store.api_key_by_hash("0" * 64) is None
    await store.touch_api_key(key.id, 12.5)
    revoked = await store.revoke_api_key(name, 13.0)
    assert revoked is not None and (revoked.last_used_at, revoked.revoked_at) == (12.5, 13.0)
    assert await store.revoke_api_key(key.id, 14.0) == revoked  # by id; the first time kept
    assert revoked in await store.list_api_keys()
    assert await store.revoke_api_key("no-such-key", 1.0) is None
    await store.delete_api_key(key.id)
    assert await store.api_key_by_hash(digest) is None


async def test_an_erased_name_fits_its_column_and_never_collides(store: Store) -> None:
    # an id of 64 characters (a host application's own): erased-<id> would be 71
    long_id = "x" * 64
    await store.create_account(Account(id=long_id, username="long", role=Role.USER))
    erased = await store.erase_account(long_id, 10.0)
    assert erased is not None and erased.username.startswith("erased-")
    assert len(erased.username) == 64 and long_id not in erased.username
    # someone chose the name erasing would give: another unique one is used
    await store.create_account(Account(id="u-taken", username="sam", role=Role.USER))
    await store.create_account(Account(id="u-squat", username="erased-u-taken", role=Role.USER))
    other = await store.erase_account("u-taken", 11.0)
    assert other is not None and other.username.startswith("erased-")
    assert other.username != "erased-u-taken"
    squatter = await store.get_account("u-squat")
    assert squatter is not None and squatter.username == "erased-u-taken"  # untouched
