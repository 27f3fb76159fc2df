"""Day-by-day streams of observations over the world, with questions and fact updates.

Each day brings biographies of new (held-out) people, sometimes an *update*: a person read
on an earlier day changes employer, told as a short biography that states the new employer
and employer city (the base model reads such text correctly in context; a narrative "X left
A and joined B" it answers with the old employer half the time). Optional kinds, for the
consolidation policy: chatter that states no fact, repeats of an earlier person in another
phrasing. Questions each day are about people read on earlier days, with the values true
on that day. Same seed, same stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reverie.world.generator import QA, Person, World, rng
from reverie.world.templates import ATTRIBUTES, QUESTIONS_TRAIN


@dataclass(frozen=True)
class Observation:
    """One thing read during a day."""

    text: str
    kind: str
    """bio | update | chatter | repeat"""
    person: str | None = None
    attrs: tuple[str, ...] = ()
    """The attributes the text states."""


@dataclass(frozen=True)
class Update:
    """A fact that changed: ``person``'s ``attribute`` went from ``old`` to ``new`` on ``day``."""

    day: int
    person: str
    attribute: str
    old: str
    new: str


@dataclass
class Day:
    index: int
    observations: list[Observation]
    questions: list[QA]
    """About people read on earlier days, with the values true on this day."""


@dataclass(frozen=True)
class StreamConfig:
    """Shape of a stream."""

    days: int = 30
    """Days in the stream."""
    people_per_day: int = 3
    """New people whose biographies are read each day."""
    update_every: int = 2
    """An employer update every this many days (0: none)."""
    first_update_day: int = 3
    """No updates before this day (there must be someone to update)."""
    chatter_per_day: int = 0
    """Observations that state no fact about anyone."""
    repeats_per_day: int = 0
    """Earlier people mentioned again, in another phrasing."""
    questions_per_day: int = 12
    """Questions asked each day about people read on earlier days."""
    offset: int = 0
    """Where in the held-out population the stream's people start (streams with different
    offsets share no people)."""


@dataclass
class Stream:
    config: StreamConfig
    seed: int
    days: list[Day] = field(default_factory=list)
    people: dict[str, Person] = field(default_factory=dict)
    """Everyone read, with their values at the end of the stream."""
    updates: list[Update] = field(default_factory=list)

    @property
    def changed(self) -> frozenset[str]:
        """The people with at least one update (single-injection references leave them out)."""
        return frozenset(u.person for u in self.updates)

    def final_questions(self, world: World, per_person: int = 3) -> list[QA]:
        """Questions about everyone read, with the values true at the end; every update's
        attribute is among each updated person's questions."""
        r = rng(self.seed, "stream-final")
        changed: dict[str, set[str]] = {}
        for u in self.updates:
            changed.setdefault(u.person, set()).add(u.attribute)
        out = []
        for p in self.people.values():
            attrs = sorted(changed.get(p.name, set()))
            rest = [a for a in ATTRIBUTES if a not in attrs]
            attrs += r.sample(rest, max(0, per_person - len(attrs)))
            out += [world.question(p, a, r) for a in attrs]
        return out

    def update_probes(self) -> list[tuple[QA, tuple[str, ...]]]:
        """For the latest update of each (person, attribute): the question with the new
        answer, and every stale answer (the value before the first update and each one
        replaced since: a fact changed twice, A -> B -> C, has two)."""
        latest: dict[tuple[str, str], Update] = {}
        for u in self.updates:
            latest[(u.person, u.attribute)] = u
        out = []
        for u in latest.values():
            p = self.people[u.person]
            q = QUESTIONS_TRAIN[u.attribute][0].format(name=p.name, poss=p.poss)
            stale = tuple(x.old for x in self.updates if (x.person, x.attribute) == (u.person, u.attribute))
            out.append((QA(q, u.new, p.name, u.attribute), stale))
        return out


def make_stream(world: World, config: StreamConfig | None = None, seed: int = 0) -> Stream:
    cfg = config or StreamConfig()
    r = rng(seed, "stream", str(cfg.offset))
    pool = iter(world.held_out[cfg.offset :])
    s = Stream(cfg, seed)
    for d in range(cfg.days):
        obs: list[Observation] = []
        known = list(s.people.values())
        for _ in range(cfg.people_per_day):
            p = next(pool)
            obs.append(Observation(world.biography(p, r), "bio", p.name, tuple(ATTRIBUTES)))
            s.people[p.name] = p
        if cfg.update_every and d >= cfg.first_update_day and (d - cfg.first_update_day) % cfg.update_every == 0 and known:
            p = s.people[r.choice(known).name]
            employer = r.choice([c for c in world.companies if c != p.attrs["employer"]])
            city = r.choice([c for c in world.cities if c != p.attrs["employer_city"]])
            news = Person(p.name, p.gender, {"employer": employer, "employer_city": city})
            obs.append(Observation(world.biography(news, r), "update", p.name, ("employer", "employer_city")))
            s.updates.append(Update(d, p.name, "employer", p.attrs["employer"], employer))
            s.updates.append(Update(d, p.name, "employer_city", p.attrs["employer_city"], city))
            s.people[p.name] = Person(p.name, p.gender, {**p.attrs, "employer": employer, "employer_city": city})
        for _ in range(cfg.repeats_per_day if known else 0):
            p = s.people[r.choice(known).name]
            obs.append(Observation(world.biography(p, r), "repeat", p.name, tuple(ATTRIBUTES)))
        for _ in range(cfg.chatter_per_day):
            obs.append(Observation(" ".join(world.haystack(4, r)), "chatter"))
        r.shuffle(obs)
        # Questions: people read on earlier days (not today), values as of this morning.
        qs = [world.question(p, r.choice(ATTRIBUTES), r) for p in r.sample(known, min(len(known), cfg.questions_per_day))]
        s.days.append(Day(d, obs, qs))
    return s


__all__ = ["Day", "Observation", "Stream", "StreamConfig", "Update", "make_stream"]
