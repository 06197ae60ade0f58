"""Scenario presets for ``python -m mailsac bench --scenario`` (README documents them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    messages: int
    sessions: int
    sizes: str
    attachments: float = 0.2  # share of messages with an attachment (≥ 1 MiB: always)
    per_session: int = 100  # messages per SMTP connection before reconnecting
    seed_messages: int = 0  # rows bulk-loaded into the store before anything else
    raw_check: int = 20  # accepted messages fetched raw and compared byte for byte


SCENARIOS: dict[str, Scenario] = {
    "a": Scenario("a", "SMTP flood: 20,000 × 4 KiB over 20 sessions", 20_000, 20, "4k", 0.1),
    "b": Scenario("b", "large mail: 2,000 × 200 KiB over 20 sessions", 2_000, 20, "200k", 0.5),
    "c": Scenario("c", "huge mail: 10 concurrent 20 MiB messages", 10, 10, "20m", 1.0,
                  per_session=1, raw_check=10),
    "d": Scenario("d", "big store: 1,000,000 seeded messages, then 5,000 × 4 KiB", 5_000, 10,
                  "4k", 0.1, seed_messages=1_000_000),
    "mix": Scenario("mix", "mixed sizes: 5,000 messages, 2–256 KiB, over 20 sessions", 5_000,
                    20, "2k:40,4k:30,16k:15,64k:10,256k:5", 0.2),
    "smoke": Scenario("smoke", "smoke test: 200 × 4 KiB over 5 sessions", 200, 5, "4k", 0.2,
                      raw_check=5),
}
ALIASES = {"flood": "a", "large": "b", "huge": "c", "store": "d"}


def get_scenario(name: str) -> Scenario:
    key = ALIASES.get(name, name)
    if key not in SCENARIOS:
        choices = ", ".join([*SCENARIOS, *ALIASES])
        raise ValueError(f"unknown scenario {name!r} (choose from {choices})")
    return SCENARIOS[key]
