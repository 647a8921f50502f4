"""Lease expiry as an observer judges it, on a fake clock."""

from gthreadd.kube.leases import LeaseObserver, LeaseTiming, lease_spec


def lease(version: str, holder: str = "n1", duration: int = 10) -> dict:
    return {"metadata": {"name": "l", "resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration}}


def test_a_lease_is_held_while_it_keeps_changing_and_expires_a_duration_after_it_stops():
    observer = LeaseObserver()
    assert observer.holder("l", lease("1"), now=100.0) == "n1"
    assert observer.holder("l", lease("1"), now=109.0) == "n1"
    assert observer.holder("l", lease("2"), now=109.5) == "n1", "a renewal restarts the clock"
    assert observer.holder("l", lease("2"), now=119.0) == "n1"
    assert observer.holder("l", lease("2"), now=120.0) == ""
    assert observer.free_for("l", now=125.0) == 5.0


def test_a_new_observer_trusts_a_lease_for_one_duration_whatever_its_times_say():
    observer = LeaseObserver()
    stale = lease("7")
    stale["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"
    assert observer.holder("l", stale, now=0.0) == "n1"
    assert observer.holder("l", stale, now=11.0) == ""


def test_an_observer_that_could_not_look_for_a_duration_trusts_every_lease_for_one_more():
    """An API server outage: the holder could not renew, and this observer could not see it try."""
    observer = LeaseObserver()
    observer.looked(100.0, blind_after_s=10)
    assert observer.holder("l", lease("1"), now=100.0) == "n1"
    observer.looked(130.0, blind_after_s=10)
    assert observer.holder("l", lease("1"), now=130.0) == "n1", "30 s unseen, but the observer was blind"
    observer.looked(136.0, blind_after_s=10)
    assert observer.holder("l", lease("1"), now=136.0) == "n1"
    observer.looked(141.0, blind_after_s=10)
    assert observer.holder("l", lease("1"), now=141.0) == "", "watched for 11 s without a renewal"


def test_missing_and_released_leases_are_free():
    observer = LeaseObserver()
    assert observer.holder("l", None, now=0.0) == ""
    assert observer.holder("l", lease("3", holder=""), now=1.0) == ""
    assert observer.free_for("l", now=4.0) == 4.0


def test_taking_over_counts_a_transition_and_renewing_does_not():
    timing = LeaseTiming(duration_s=15, renew_s=5)
    first = lease_spec("n1", timing, None)
    assert first["holderIdentity"] == "n1" and first["leaseTransitions"] == 0 and first["leaseDurationSeconds"] == 15
    renewed = lease_spec("n1", timing, {"spec": first})
    assert renewed["leaseTransitions"] == 0 and renewed["acquireTime"] == first["acquireTime"]
    taken = lease_spec("n2", timing, {"spec": renewed})
    assert taken["holderIdentity"] == "n2" and taken["leaseTransitions"] == 1
