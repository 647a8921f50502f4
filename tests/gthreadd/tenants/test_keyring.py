"""The keys file and each tenant's limits, on a fake clock (`now` is a number)."""

import pytest

from gthreadd.tenants.keyring import Keyring, digest
from gthreadd.tenants.keys_file import parse_keys
from gthreadd.tenants.token_bucket import TokenBucket

A, B = digest("key-a"), digest("key-b")


def keyring(text: str, now: float = 0.0, previous: Keyring | None = None) -> Keyring:
    parsed = parse_keys(text, "keys.yaml")
    assert not parsed.errors, parsed.errors
    return Keyring.from_entries(parsed.entries, now, previous)


def test_a_key_is_found_by_its_digest_and_only_by_it():
    ring = keyring(f"- name: team-a\n  sha256: {A}\n")
    assert ring.identify("key-a").name == "team-a"
    assert ring.identify(A) is None and ring.identify("key-b") is None


def test_models_are_names_or_globs_over_every_name_of_a_model():
    tenant = keyring(f"- name: a\n  sha256: {A}\n  models: [llama-*, whisper]\n").identify("key-a")
    assert tenant.may_use(("llama-3-8b",)) and tenant.may_use(("whisper",))
    assert tenant.may_use(("chat", "llama-local")), "a Model's modelName counts too"
    assert not tenant.may_use(("gemma",)) and not tenant.may_use(("whisper-turbo",))
    assert keyring(f"- name: b\n  sha256: {B}\n").identify("key-b").may_use(("anything",)), "default: all"


def test_the_sixth_request_in_a_minute_waits_for_the_refill():
    tenant = keyring(f"- name: a\n  sha256: {A}\n  requestsPerMinute: 5\n").identify("key-a")
    for i in range(5):
        assert tenant.admit(now=i) is None
        tenant.release()
    refused = tenant.admit(now=5)
    assert refused.status == 429 and refused.kind == "requests_per_minute"
    assert refused.reason == "key a has sent its 5 requests per minute (requestsPerMinute)"
    assert refused.retry_after == 7, "one request refills in 12 s, 5 s of it gone"
    assert tenant.admit(now=12) is None


def test_tokens_are_charged_after_the_fact_and_refuse_until_the_debt_is_repaid():
    tenant = keyring(f"- name: a\n  sha256: {A}\n  tokensPerMinute: 600\n").identify("key-a")
    assert tenant.admit(now=0) is None
    tenant.charge(900, now=1)  # a long answer: 300 over the budget
    tenant.release()
    refused = tenant.admit(now=1)
    assert refused.kind == "tokens_per_minute" and refused.retry_after == 31, "300 + 1 tokens at 10 a second"
    assert tenant.admit(now=32) is None


def test_max_concurrent_counts_requests_in_flight():
    tenant = keyring(f"- name: a\n  sha256: {A}\n  maxConcurrent: 2\n").identify("key-a")
    assert tenant.admit(0) is None and tenant.admit(0) is None
    refused = tenant.admit(0)
    assert refused.kind == "max_concurrent" and refused.retry_after == 1
    tenant.release()
    assert tenant.admit(0) is None


def test_a_refusal_takes_nothing():
    tenant = keyring(f"- name: a\n  sha256: {A}\n  requestsPerMinute: 1\n  maxConcurrent: 1\n").identify("key-a")
    assert tenant.admit(0) is None
    assert tenant.admit(0).kind == "max_concurrent"
    tenant.release()
    assert tenant.admit(0).kind == "requests_per_minute" and tenant.in_flight == 0


def test_an_edited_file_keeps_what_each_key_has_used():
    first = keyring(f"- name: a\n  sha256: {A}\n  requestsPerMinute: 5\n")
    tenant = first.identify("key-a")
    for _ in range(4):
        tenant.admit(0)
    edited = keyring(f"- name: a\n  sha256: {A}\n  requestsPerMinute: 3\n- name: b\n  sha256: {B}\n", 0, first)
    again = edited.identify("key-a")
    assert again.in_flight == 4 and again.admit(0).kind == "requests_per_minute"
    assert edited.identify("key-b").admit(0) is None


def test_plain_api_keys_mean_full_access():
    ring = Keyring.full_access(("s3cret",))
    tenant = ring.identify("s3cret")
    assert tenant.admin and tenant.may_use(("any",)) and tenant.admit(0) is None
    assert not Keyring.full_access(())


@pytest.mark.parametrize("text, message", [
    (f"- name: a\n  sha256: {A}\n  requestsPerMinut: 5\n", "keys.yaml:3: [0].requestsPerMinut: unknown field"),
    ("- name: a\n  sha256: s3cret\n", "keys.yaml:2: [0].sha256: expected the key's SHA-256 digest"),
    (f"- name: a\n  sha256: {A}\n- name: a\n  sha256: {B}\n", "keys.yaml:3: [1].name: the same name as entry 0"),
    (f"- name: a\n  sha256: {A}\n- name: b\n  sha256: {A}\n", "keys.yaml:4: [1].sha256: the same sha256 as entry 0"),
    (f"- name: a\n  sha256: {A}\n  maxConcurrent: 0\n", "keys.yaml:3: [0].maxConcurrent: Input should be greater than 0"),
    ("keys: []\n", "keys.yaml:1: expected one YAML list of keys"),
])
def test_a_bad_file_is_refused_whole_naming_line_and_field(text, message):
    parsed = parse_keys(text, "keys.yaml")
    assert not parsed.entries and any(str(e).startswith(message) for e in parsed.errors), parsed.errors


def test_a_bucket_resized_keeps_what_was_spent():
    bucket = TokenBucket.full(60, 0)
    bucket.take(50, 0)
    assert bucket.resized(100, 0).level == 50 and bucket.resized(30, 0).level == -20
