"""What this host has: its CPU's fields and the packages installed. Ground, so that the stages' start-up
(quest.stages), the fingerprint (quest.tracking) and a cluster's worker check (quest.core.cluster) read them alike."""

from __future__ import annotations

from importlib import metadata


def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo; empty where there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    break  # the first processor is enough: a machine's cores are one model
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def installed_versions(names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found
