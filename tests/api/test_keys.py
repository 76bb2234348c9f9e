"""api.keys: keys are stored hashed, checked exactly, revocable, and the file survives bad edits."""
from __future__ import annotations

import json
import stat
import time

import pytest

from api.keys import KeyFileError, KeyRing, create_key, read_keys, revoke_key, verify


def test_only_the_hash_is_stored_and_the_key_verifies(tmp_path):
    path = tmp_path / "keys.json"
    key, rec = create_key(path, "customer", "acme")
    text = path.read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text and key not in text
    assert rec.sha256 in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify(read_keys(path), key) == rec


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),   # wrong secret
    lambda k: k.replace("ick_", "ick_0", 1)[:len(k)],     # wrong id
    lambda k: k + "x",                                     # too long
    lambda k: "",
    lambda k: "Bearer " + k,
])
def test_near_misses_are_refused(tmp_path, mangle):
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "internal")
    assert verify(read_keys(path), mangle(key)) is None
    assert verify(read_keys(path), None) is None


def test_scopes_internal_covers_customer_not_the_reverse(tmp_path):
    path = tmp_path / "keys.json"
    _, cust = create_key(path, "customer")
    _, internal = create_key(path, "internal")
    assert cust.allows("customer") and not cust.allows("internal")
    assert internal.allows("customer") and internal.allows("internal")
    with pytest.raises(ValueError, match="scope must be one of"):
        create_key(path, "admin")


def test_revoked_key_is_refused_and_others_keep_working(tmp_path):
    path = tmp_path / "keys.json"
    k1, r1 = create_key(path, "customer")
    k2, _ = create_key(path, "customer")
    revoke_key(path, r1.key_id)
    keys = read_keys(path)
    assert verify(keys, k1) is None
    assert verify(keys, k2) is not None
    with pytest.raises(KeyError, match="no key"):
        revoke_key(path, "000000000000")


def test_keyring_follows_the_file_and_keeps_keys_through_a_bad_edit(tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing(path)
    assert ring.keys == {}
    k1, _ = create_key(path, "customer")
    ring.refresh()
    assert ring.check(k1) is not None
    time.sleep(0.01)
    path.write_text("{not json")
    ring.refresh()
    assert ring.check(k1) is not None  # a broken edit does not lock everyone out
    assert ring.error and "not a valid idlecap key file" in ring.error
    with pytest.raises(KeyFileError):
        read_keys(path)


def test_many_keys_unique_ids(tmp_path):
    path = tmp_path / "keys.json"
    ids = {create_key(path, "customer")[1].key_id for _ in range(30)}
    assert len(ids) == 30 == len(json.loads(path.read_text())["keys"])
