"""World streams for the consolidation policy: days where choosing what to keep matters.

A plain :func:`reverie.world.stream.make_stream` day holds a few biographies, all worth
keeping. Here a day holds about ten observations of very different (hidden) future value,
and the night's budget keeps about three. What decides the value is hidden, but correlates
with what a policy can observe, as in real use:

- **popularity** (hidden): each new person is *hot* with probability ``hot_prob``. Hot
  people are mentioned again on later days (``repeat`` observations, another phrasing) and
  on their first day more often than cold ones, and future questions ask about them
  ``ask_weight_hot`` times as often. Observable proxy: how often a person is mentioned.
- **known**: biographies of base-population people, whose facts the base model already
  answers closed-book (low surprise): consolidating them adds nothing.
- **chatter**: haystack sentences that state no fact; never asked about.
- **duplicate**: an exact copy of an observation of today or yesterday.
- **update**: a person read on an earlier day changes employer (the person is drawn by
  popularity); later questions about them lean towards the changed attributes.

Questions each day ask about held-out people mentioned on earlier days (values as of that
morning), drawn by popularity weight, plus ``known_questions`` about base people. A stream
with ``nights`` nights has ``nights + 1`` days: the last day only asks.

The people come from a *region* of the held-out population: training streams draw from
``held_out[0:1000]``, benchmark streams from ``held_out[1000:2000]``, so a benchmark never
reads a person the policy saw in training. Same seed, same stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reverie.world import ATTRIBUTES, World
from reverie.world.generator import QA, Person, rng
from reverie.world.stream import Day, Observation, Update

TRAIN_REGION = (0, 1000)
"""Held-out people used by training streams."""
BENCH_REGION = (1000, 2000)
"""Held-out people used by benchmark streams (disjoint from training)."""


@dataclass(frozen=True)
class PolicyStreamConfig:
    """Shape of a policy stream (the defaults are the benchmark's)."""

    nights: int = 8
    """Nights (consolidation decisions); the stream has one more day, for questions."""
    new_per_day: int = 3
    """New held-out people introduced each day."""
    hot_prob: float = 0.3
    """Chance that a new person is hot (hidden)."""
    same_day_repeat_hot: float = 0.6
    """Chance that a hot person's first day also brings a second mention."""
    same_day_repeat_cold: float = 0.05
    """The same for a cold person."""
    mention_hot: float = 0.45
    """Chance per day that a hot person read earlier is mentioned again."""
    mention_cold: float = 0.04
    """The same for a cold person."""
    known_per_day: int = 2
    """Biographies of base-population people (already known to the base model)."""
    chatter_per_day: int = 2
    """Observations of haystack sentences (no fact)."""
    duplicate_prob: float = 0.5
    """Chance per day of an exact copy of an observation of today or yesterday."""
    update_prob: float = 0.5
    """Chance per day (from day 2) of an employer update of a person read earlier."""
    questions_per_day: int = 12
    """Questions about held-out people mentioned on earlier days."""
    known_questions: int = 1
    """Questions about base people (closed-book knowledge) per day."""
    ask_weight_hot: float = 8.0
    """Relative chance that a question asks about a hot person (a cold one: 1)."""
    max_items: int = 16
    """Most observations in one day (the policy's buffer size)."""
    region: tuple[int, int] = TRAIN_REGION
    """Slice of the held-out population the stream's people come from."""


@dataclass
class PolicyStream:
    """A stream with its hidden truth (for analysis; the oracle uses the questions only)."""

    config: PolicyStreamConfig
    seed: int
    days: list[Day] = field(default_factory=list)
    hot: dict[str, bool] = field(default_factory=dict)
    """Hidden popularity of each held-out person read."""
    updates: list[Update] = field(default_factory=list)

    @property
    def questions(self) -> list[list[QA]]:
        """Questions per night's following day: ``questions[d]`` is asked after night ``d``."""
        return [d.questions for d in self.days[1:]]


def make_policy_stream(world: World, config: PolicyStreamConfig | None = None, seed: int = 0) -> PolicyStream:
    cfg = config or PolicyStreamConfig()
    r = rng(seed, "policy-stream", str(cfg.region))
    lo, hi = cfg.region
    pool = world.held_out[lo:hi]
    order = r.sample(range(len(pool)), len(pool))  # a seed-dependent walk through the region
    fresh = iter(pool[i] for i in order)
    s = PolicyStream(cfg, seed)
    now: dict[str, Person] = {}  # held-out people read so far, with today's values
    weight: dict[str, float] = {}
    changed: dict[str, set[str]] = {}
    prev: list[Observation] = []
    for d in range(cfg.nights + 1):
        # Questions first: about people mentioned before today, values as of this morning.
        qs: list[QA] = []
        if d > 0:
            names = list(now)
            w = [weight[n] for n in names]
            for n in _weighted_sample(r, names, w, min(cfg.questions_per_day, len(names))):
                p = now[n]
                attrs = sorted(changed.get(n, ()))
                a = r.choice(attrs) if attrs and r.random() < 0.5 else r.choice(ATTRIBUTES)
                qs.append(world.question(p, a, r))
            for p in r.sample(world.base, cfg.known_questions):
                qs.append(world.question(p, r.choice(ATTRIBUTES), r))
        obs: list[Observation] = []
        earlier = list(now)
        for _ in range(cfg.new_per_day):
            p = next(fresh)
            s.hot[p.name] = r.random() < cfg.hot_prob
            weight[p.name] = cfg.ask_weight_hot if s.hot[p.name] else 1.0
            now[p.name] = p
            obs.append(Observation(world.biography(p, r), "bio", p.name, tuple(ATTRIBUTES)))
            if r.random() < (cfg.same_day_repeat_hot if s.hot[p.name] else cfg.same_day_repeat_cold):
                obs.append(Observation(world.biography(p, r), "repeat", p.name, tuple(ATTRIBUTES)))
        for n in earlier:
            if r.random() < (cfg.mention_hot if s.hot[n] else cfg.mention_cold):
                obs.append(Observation(world.biography(now[n], r), "repeat", n, tuple(ATTRIBUTES)))
        if d >= 2 and earlier and r.random() < cfg.update_prob:
            n = _weighted_sample(r, earlier, [weight[x] for x in earlier], 1)[0]
            p = now[n]
            employer = r.choice([c for c in world.companies if c != p.attrs["employer"]])
            city = r.choice([c for c in world.cities if c != p.attrs["employer_city"]])
            news = Person(p.name, p.gender, {"employer": employer, "employer_city": city})
            obs.append(Observation(world.biography(news, r), "update", n, ("employer", "employer_city")))
            s.updates += [Update(d, n, "employer", p.attrs["employer"], employer),
                          Update(d, n, "employer_city", p.attrs["employer_city"], city)]
            now[n] = Person(n, p.gender, {**p.attrs, "employer": employer, "employer_city": city})
            changed.setdefault(n, set()).update(("employer", "employer_city"))
        for p in r.sample(world.base, cfg.known_per_day):
            obs.append(Observation(world.biography(p, r), "known", p.name, tuple(ATTRIBUTES)))
        for _ in range(cfg.chatter_per_day):
            obs.append(Observation(" ".join(world.haystack(r.randint(2, 4), r)), "chatter"))
        if r.random() < cfg.duplicate_prob and (prev or obs):
            src = r.choice(prev + obs)
            obs.append(Observation(src.text, "duplicate", src.person, src.attrs))
        r.shuffle(obs)
        # Over the buffer size: drop chatter first, then known biographies (never a fact of
        # a held-out person).
        for kind in ("chatter", "known", "duplicate", "repeat"):
            while len(obs) > cfg.max_items and any(o.kind == kind for o in obs):
                obs.remove(next(o for o in reversed(obs) if o.kind == kind))
        s.days.append(Day(d, obs, qs))
        prev = obs
    return s


def _weighted_sample(r, items: list, weights: list[float], k: int) -> list:
    """``k`` distinct items, each draw with chance proportional to its weight."""
    items, weights = list(items), list(weights)
    out = []
    for _ in range(min(k, len(items))):
        x = r.random() * sum(weights)
        i = 0
        while i < len(weights) - 1 and x >= weights[i]:
            x -= weights[i]
            i += 1
        out.append(items.pop(i))
        weights.pop(i)
    return out


__all__ = ["BENCH_REGION", "TRAIN_REGION", "PolicyStream", "PolicyStreamConfig", "make_policy_stream"]
