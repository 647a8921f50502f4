"""Where a unit can go: runs of contiguous, usable (healthy, not MIG) device indices of the wanted product, and the
bytes it claims on each while awake. Pure functions of the inventory."""

from collections.abc import Mapping, Sequence

from scheduler.inventory import Device
from scheduler.units import Policy


def claim_bytes(policy: Policy, device: Device) -> int:
    return int(policy.memory_fraction * device.total_bytes)


def windows(devices: Sequence[Device], policy: Policy) -> list[tuple[int, ...]]:
    """Every run of `tensor_parallel` consecutive device indices the unit may use."""
    usable = {d.index for d in devices if d.usable and (not policy.product or d.product == policy.product)}
    indices = sorted(usable)
    tp = policy.tensor_parallel
    return [tuple(range(i, i + tp)) for i in indices if all(j in usable for j in range(i, i + tp))]


def fits(window: tuple[int, ...], policy: Policy, devices: Mapping[int, Device], free: Mapping[int, int]) -> bool:
    return all(free[i] >= claim_bytes(policy, devices[i]) for i in window)


def unplaceable_reason(devices: Sequence[Device], policy: Policy) -> str:
    """Why no window could ever hold the unit on this host, or "" if one could."""
    if not windows(devices, policy):
        product = f" {policy.product}" if policy.product else ""
        have = ", ".join(sorted({d.product + (" in MIG mode" if d.mig else "") for d in devices})) or "none"
        return (f"needs {policy.tensor_parallel} contiguous healthy{product} device(s) without MIG; "
                f"this host has {len(devices)} ({have})")
    if not any(all(claim_bytes(policy, d) <= d.capacity_bytes for d in devices if d.index in w)
               for w in windows(devices, policy)):
        return (f"gpuMemoryUtilization {policy.memory_fraction} is more than this host lets one model claim "
                f"({min(d.capacity_bytes / d.total_bytes for d in devices):.2f} of a device)")
    return ""


def never_placeable(devices: Sequence[Device], policy: Policy) -> str:
    """Why this host can never run the unit, or "": the spec's own reason (nodeSelector, product)
    first, then placement's. What the core marks unschedulable and what an apply dry run reports."""
    return policy.unschedulable_reason or unplaceable_reason(devices, policy)
