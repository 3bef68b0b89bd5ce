"""Generated container names, in Docker's adjective_surname style."""

from __future__ import annotations

import random
from collections.abc import Callable

ADJECTIVES = (
    "admiring",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "elegant",
    "epic",
    "festive",
    "focused",
    "gallant",
    "gifted",
    "happy",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
)
SURNAMES = (
    "agnesi",
    "babbage",
    "bardeen",
    "bohr",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "faraday",
    "feynman",
    "franklin",
    "galois",
    "goldberg",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kalam",
    "knuth",
    "lamarr",
    "lovelace",
    "meitner",
    "mirzakhani",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "yonath",
)


def generate(taken: Callable[[str], bool], rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    for attempt in range(100):
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"
        if attempt >= 10:
            name += str(rng.randrange(10, 100))
        if not taken(name):
            return name
    raise RuntimeError("cannot find a free container name")
