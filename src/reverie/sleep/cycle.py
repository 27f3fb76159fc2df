"""One sleep: select → probe → inject → merge under the guard → replay → clear the buffer.

Knowledge updates: every probe has a key (what it asks about, e.g. a person's employer).
For each key only the newest item's probes are *active*; an item whose probe answers a key
differently from an older item's records that it ``supersedes`` it (ledger link: old item,
key, old and new answer). Replay then re-distils the active answers, which is what turns
the model's answer to the new value: the older item's delta still leans towards the old.

Transfer (complementary learning systems): a hypernetwork item is a fast trace. At the next
sleep it is *transferred*: that night's replay is fitted on the weights without it, on all
its probes (and anchors that hold unrelated answers at the base model's), and only once the
guard has accepted the replay is the item removed from the weights (the ledger says so; its
probes stay active). A refused replay leaves it where it was, for the next night. So
about one night of raw hypernetwork deltas is in the weights at a time: summed over a
hundred items they break the model (``reverie bench sequential``), and replay alone could
not repair that.

Replay mode: *probe replay*. The rows are the question-answer pairs the model wrote itself
when each item was consolidated (answers from the text in context); no raw text is kept or
re-read. An item the guard refused keeps its probes in the ledger (its refusal note), so
its knowledge can still come in gently through replay.

The guard judges a replay delta on the distance from the base model alone (its budget of
answers changed per update would refuse any consolidation of a night's worth of facts);
refused all the same, the items it would have transferred stay in the weights.

Under the ``bank`` strategy (a memory of separate adapters, routed per question) there is
no replay or transfer: items share no weights, and an update is a newer item about the same
name, which the router prefers for the facts it states. Instead each new item is
*repaired*: checked on its own probes, with a small correction fitted for the facts its
adapter misses. Where the injector fits each item to its probes (``learn``, a real model),
a short text about a stored item *revises* that item instead (``reverie.sleep.revise``).

Commits: the night's items, refusals, discarded observations (not selected) and supersede
links go into the memory in one commit, each naming its buffer id; replay is a second
commit; then the buffer is cleared. Killed before the first commit, the sleep never
happened; after it, the next open drops the consumed observations from the buffer (they
are in the ledger) and at worst that night's replay is missing.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from reverie.base.prompt import WORLD
from reverie.errors import ReverieError
from reverie.memory import Memory, consolidate
from reverie.memory.route import Router
from reverie.sleep import replay, revise
from reverie.sleep.buffer import Observation
from reverie.sleep.probe import ABOUT_KEY, PROBERS, Probe, default_prober
from reverie.utils import registrar

if TYPE_CHECKING:
    from reverie.base.model import BaseModel
    from reverie.hypernet.injectors import Injector
    from reverie.memory import Guard, Weights
    from reverie.sleep.buffer import Buffer

SELECTORS: dict[str, type[Selector]] = {}
"""Selector name -> class. ``first`` is here; the trained policy registers ``learned``
(``reverie.policy.selector``, imported by ``reverie.learner``)."""
register_selector = registrar(SELECTORS)


class Sleeper(Protocol):
    """What a sleep needs of the learner it consolidates into (``reverie.learner.Learner``
    is one): its model and injector, the owner of its weights with the memory attached, its
    interference guard and its episodic buffer."""

    @property
    def bm(self) -> BaseModel: ...

    @property
    def injector(self) -> Injector: ...

    @property
    def weights(self) -> Weights:
        """The model's weights, the memory attached to them (``Weights.attached``)."""
        ...

    @property
    def guard(self) -> Guard | None:
        """Every consolidated update passes it (None: no guard)."""
        ...

    @property
    def buffer(self) -> Buffer | None:
        """The observations read since the last sleep."""
        ...

    def bank_pieces(self, text: str) -> list[tuple[str, dict]]:
        """How ``text`` goes into a bank: itself, or its chunks, with their ledger fields."""
        ...

    def anchors(self, n: int, r: random.Random) -> list[tuple[str, str]]:
        """``n`` closed-book questions about the base population with the base model's answers."""
        ...


class Selector(ABC):
    """Chooses which buffered observations a sleep consolidates (the consolidation policy)."""

    @abstractmethod
    def select(self, obs: list[Observation], budget: int | None, known: set[str]
               ) -> tuple[list[Observation], list[tuple[Observation, str]]]:
        """(kept, [(dropped, why)]); ``known``: source hashes already in the memory."""

    def bind(self, learner: Sleeper, mem: Memory) -> None:  # noqa: B027 - optional hook
        """Called by ``sleep()`` before ``select``: context for selectors that read the
        model or the ledger (the learned policy); the default needs none."""


@dataclass
class SleepConfig:
    """How one sleep consolidates the buffer."""

    budget: int | None = None
    """Most observations consolidated in one sleep (None: all); the rest are discarded."""
    selector: str = "learned"
    """Which observations to keep under the budget (a registry: see SELECTORS). The learned
    policy (``reverie.policy.selector``) beat ``first`` at every budget of ``reverie bench
    policy``; without a budget, or one that does not bind, it keeps what ``first`` keeps."""
    replay: bool = True
    """Re-distil earlier items' probes after merging the new ones."""
    replay_items: int = 24
    """Earlier items sampled for replay each sleep."""
    replay_probes: int = 2
    """Probes per sampled earlier item (different keys where it has them)."""
    phrasings: int = 2
    """Question phrasings replayed per fact of tonight's and transferred items."""
    transfer: bool = True
    """Move earlier nights' hypernetwork items into replay deltas (see the module notes)."""
    anchors: int = 32
    """Base-population questions answered by the base model, pulling unrelated answers back."""
    replay_steps: int = 60
    """AdamW steps of the replay fit."""
    replay_lr: float = 5e-3
    """Learning rate of the replay fit."""
    replay_rank: int = 8
    """Rank of each night's replay delta."""
    repair: bool = True
    """Bank memories: check each new item's adapter on its own probes and fit a correction
    for the facts it misses (see reverie.sleep.replay.repair). Merged memories re-distil new
    items through replay instead."""
    repair_steps: int = 40
    """AdamW steps of each correction."""
    prober: str | None = None
    """Who writes the probe questions (see reverie.sleep.probe.PROBERS); None: the world's
    for the embedded world model, the free-text prober for any other model."""
    seed: int = 0
    """Seeds the replay sample."""


@register_selector("first")
class FirstSelector(Selector):
    """Reading order, exact duplicates (of the memory or of each other) dropped, then the first ``budget``."""

    def select(self, obs: list[Observation], budget: int | None, known: set[str]
               ) -> tuple[list[Observation], list[tuple[Observation, str]]]:
        keep: list[Observation] = []
        drop: list[tuple[Observation, str]] = []
        seen = set(known)
        for o in obs:
            if o.sha256 in seen:
                drop.append((o, "duplicate"))
                continue
            seen.add(o.sha256)
            if budget is not None and len(keep) >= budget:
                drop.append((o, "over budget"))
                continue
            keep.append(o)
        return keep, drop


def probe_index(mem: Memory, ledger: list[dict] | None = None) -> dict[str, list[tuple[str, Probe]]]:
    """key -> the active probes [(item, probe)]: those of the newest live or transferred
    item (or refusal) that asks about the key (``ledger``: ``mem.ledger()``, if already read)."""
    ledger = mem.ledger() if ledger is None else ledger
    live = set(mem.items) | {e["id"] for e in ledger if e.get("event") == "forget" and e.get("reason") == "transferred"}
    index: dict[str, list[tuple[str, Probe]]] = {}
    for e in ledger:
        if "probes" not in e:
            continue
        owner = e["id"] if e.get("event") == "add" else f"refused:{e.get('buffer_id')}"
        if e.get("event") == "add" and owner not in live:
            continue
        mine: dict[str, list[tuple[str, Probe]]] = {}
        for q, a, k in e["probes"]:
            mine.setdefault(k, []).append((owner, Probe(q, a, k)))
        index.update(mine)  # newer entries replace older ones key by key
    return index


def bank_router(mem: Memory, kind: str = "key") -> Router:
    """The router (``key``; ``text`` for a real model's memory of a user's text) over a bank
    memory's live items, each also known by the questions it is the newest answer to (its
    active probes), so that an update and the item it updates are told apart."""
    ledger = mem.ledger()  # read once for both
    active: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}  # item -> what its "what do you know about X" probes name
    for k, entries in probe_index(mem, ledger).items():
        for owner, p in entries:
            active.setdefault(owner, []).append(p.question)
            if k.startswith(ABOUT_KEY):
                names.setdefault(owner, []).append(k[len(ABOUT_KEY) :])
    return mem.router(kind, questions=active, ledger=ledger, names=names)


def router_for(bm: BaseModel) -> Callable[[Memory], Router]:
    """How a model's bank memory routes: by document key for the embedded world model (its
    questions name the people they ask about), with the text router for any other model."""
    kind = "key" if bm.format is WORLD else "text"
    return functools.partial(bank_router, kind=kind)


def _answer(probes: list[Probe]) -> str:
    """The item's answer for a key: the most common over its question phrasings."""
    answers = [p.answer for p in probes]
    return max(set(answers), key=answers.count)


def sleep(learner: Sleeper, cfg: SleepConfig | None = None) -> dict:
    """Consolidate the learner's buffer into the memory attached to its weights; returns what happened."""
    cfg = cfg or SleepConfig()
    weights = learner.weights
    mem = weights.attached()
    bank = weights.is_bank
    if bank:
        # Bank items are separate adapters routed per question: tonight's cannot disturb
        # earlier ones, so there is nothing for replay to protect or for transfer to move.
        cfg = replace(cfg, replay=False, transfer=False)
    buf = learner.buffer
    if buf is None:
        raise ReverieError("the learner has no episodic buffer: attach a memory first")
    obs = buf.items()
    t0 = time.perf_counter()
    if bank:
        revise.finish(mem)  # a sleep killed between a revision's two commits
    rep: dict[str, Any] = {"observations": len(obs), "consolidated": 0, "refused": 0, "discarded": 0,
                           "superseded": 0, "replay_rows": 0, "transferred": 0, "config": asdict(cfg)}
    if not obs:
        return rep | {"sleep_s": 0.0}
    ledger = mem.ledger()  # nothing is committed before tonight's items: read once
    known = {e["source_sha256"] for e in mem.live_entries(ledger).values()}
    if cfg.selector not in SELECTORS:
        raise ReverieError(f"unknown selector {cfg.selector!r} (known: {', '.join(SELECTORS)})")
    selector = SELECTORS[cfg.selector]()
    selector.bind(learner, mem)
    chosen, dropped = selector.select(obs, cfg.budget, known)
    bm = learner.bm
    # Into a bank, a text longer than the window goes as chunks, each its own item (probed,
    # repaired and routed on its own); anywhere else, as one item.
    units = [(o, t, x) for o in chosen for t, x in (learner.bank_pieces(o.text) if bank else [(o.text, {})])]
    texts = [t for _, t, _ in units]
    prober = cfg.prober or default_prober(bm)
    if prober not in PROBERS:
        raise ReverieError(f"unknown prober {prober!r} (known: {', '.join(PROBERS)})")
    # Into a bank that a fitting injector writes, a short text about a stored item revises it
    # (reverie.sleep.revise): probed about the item's subject, fitted with the item's probes.
    revs = revise.find(weights, ledger, texts) if bank and learner.injector.fits_probes and texts else [None] * len(texts)
    subjects = [None if r is None else r.subject for r in revs]
    probes = PROBERS[prober]().probe(bm, texts, subjects) if texts else []
    probes = [ps if r is None else revise.merged(r, t, ps) for r, t, ps in zip(revs, texts, probes, strict=True)]
    index = probe_index(mem, ledger)
    extra: list[dict[str, Any]] = []
    notes = [{"event": "discarded", "buffer_id": o.id, "reason": why, "source_sha256": o.sha256,
                         "time": time.time()} for o, why in dropped]
    for (o, _, piece), ps in zip(units, probes, strict=True):
        by_key: dict[str, list[Probe]] = {}
        for p in ps:
            by_key.setdefault(p.key, []).append(p)
        links = []
        for k, mine in by_key.items():
            if k in index:
                old = _answer([p for _, p in index[k]])
                new = _answer(mine)
                if old != new:
                    links.append({"item": index[k][0][0], "key": k, "old": old, "new": new})
        extra.append({"kind": "observation", "buffer_id": o.id, "probes": [[p.question, p.answer, p.key] for p in ps],
                      "supersedes": links} | piece)
    for e, r, t in zip(extra, revs, texts, strict=True):
        if r is not None:
            e |= {"revises": r.item, "key": revise.key(r, t)} | ({"subject": r.subject} if r.subject else {})
        rep["superseded"] += len(links)
    moved = transferable(mem) if cfg.transfer and cfg.replay else []  # before tonight's items exist
    # A revision is a correction learned on top of the item's adapter (copied: the item's
    # file is forgotten once the revision is stored), stacked with it into one item.
    bases = [None if r is None else {t: (A.clone(), B.clone()) for t, (A, B) in mem.factors(r.item).items()} for r in revs]
    ads = learner.injector.inject_probed(texts, probes, bases) if texts else []
    if bank and cfg.repair and ads and not learner.injector.fits_probes:
        t1 = time.perf_counter()
        first = not mem.state["bias"]  # the bias goes into the weights with the memory's first item
        fixed = [replay.repair(bm, ad, ps, steps=cfg.repair_steps, seed=cfg.seed, with_bias=first)
                 for ad, ps in zip(ads, probes, strict=True)]
        ads = [a for a, _ in fixed]
        for e, (_, info) in zip(extra, fixed, strict=True):
            e["repair"] = info
        rep["repaired"] = sum(bool(info["failed"]) for _, info in fixed)
        rep["repair_s"] = round(time.perf_counter() - t1, 3)
    ids = consolidate(weights, ads, [o.sha256 for o, _, _ in units], learner.guard, texts, extra, notes)
    rep["consolidated"] = sum(i is not None for i in ids)
    rep["refused"] = sum(i is None for i in ids)
    rep["discarded"] = len(dropped)
    rep["items"] = [i for i in ids if i is not None]
    if any(r is not None and i is not None for r, i in zip(revs, ids, strict=True)):
        rep["revised"] = len(revise.finish(mem))
        weights.refresh()
    rep["inject_merge_s"] = round(time.perf_counter() - t0, 3)
    if cfg.replay and (chosen or moved):
        t1 = time.perf_counter()
        full = set(rep["items"]) | {f"refused:{o.id}" for (o, _, _), i in zip(units, ids, strict=True) if i is None} | set(moved)
        rows = replay_rows(learner, mem, cfg, full)
        live = [i for i in moved if i in set(mem.items)]
        removal = {t: -W for t, W in _dense_sum(mem, live).items()}
        if rows:
            # Fitted on the memory as it will be once the transfer is done (adapters injected
            # ad hoc are no part of it).
            weights.refresh(removal or None, injected=False)
            ad = replay.fit(bm, rows, tuple(mem.total), cfg.replay_rank, cfg.replay_steps, cfg.replay_lr, seed=cfg.seed)
            sha = hashlib.sha256("\n".join(f"{q}\t{a}" for q, a in rows).encode()).hexdigest()
            rid = consolidate(weights, [ad], [sha], learner.guard, [f"replay of {len(rows)} probes"],
                              [{"kind": "replay", "covered": sorted(full)}], drift_only=True, pending=removal)
            rep["replay_item"] = rid[0]
            if rid[0] is not None:
                for i in live:
                    mem.forget(i, reason="transferred")
                rep["transferred"] = len(live)
            weights.refresh()
        rep["replay_rows"] = len(rows)
        rep["replay_s"] = round(time.perf_counter() - t1, 3)
    buf.drop([o.id for o in obs])
    rep["sleep_s"] = round(time.perf_counter() - t0, 3)
    return rep


def transferable(mem: Memory) -> list[str]:
    """Earlier nights' hypernetwork items still in the weights, and any transferred item no
    accepted replay has covered: tonight's replay must cover all their probes."""
    ledger = mem.ledger()
    covered = {o for e in ledger if e.get("event") == "add" and e.get("kind") == "replay" for o in e.get("covered", [])}
    out = [e["id"] for e in ledger if e.get("event") == "forget" and e.get("reason") == "transferred" and e["id"] not in covered]
    live = set(mem.items)
    out += [e["id"] for e in ledger if e.get("event") == "add" and e.get("kind") == "observation"
            and e["id"] in live]
    return out


def _dense_sum(mem: Memory, ids: list[str]) -> dict:
    from reverie.memory.merges import dense

    total: dict = {}
    for i in ids:
        for t, W in dense(mem.factors(i, applied=True)).items():
            total[t] = total.get(t, 0) + W
    return total


def replay_rows(learner: Sleeper, mem: Memory, cfg: SleepConfig, new_owners: set[str]) -> list[tuple[str, str]]:
    """Tonight's and transferred items' probes (``phrasings`` per fact), a sample of earlier
    items' active probes, and anchors answered by the base model."""
    index = probe_index(mem)
    by_owner: dict[str, list[Probe]] = {}
    for entries in index.values():
        for owner, p in entries:
            by_owner.setdefault(owner, []).append(p)
    r = random.Random(f"{cfg.seed}|{mem.state['ledger_lines']}")
    # Owners in the probe index's order, which the ledger fixes, not sorted: item ids are random
    # (uuid4), so sorting them made the sample, and every night after it, differ from run to run.
    rows = []
    for o in (o for o in by_owner if o in new_owners):
        facts: dict[str, list[Probe]] = {}
        for p in by_owner[o]:
            facts.setdefault(p.key, []).append(p)
        for ps in facts.values():
            rows += [(p.question, p.answer) for p in r.sample(ps, min(cfg.phrasings, len(ps)))]
    earlier = [o for o in by_owner if o not in new_owners]
    for o in r.sample(earlier, min(cfg.replay_items, len(earlier))):
        keys: dict[str, list[Probe]] = {}
        for p in by_owner[o]:
            keys.setdefault(p.key, []).append(p)
        for k in r.sample(sorted(keys), min(cfg.replay_probes, len(keys))):
            rows.append(((p := r.choice(keys[k])).question, p.answer))
    if rows and cfg.anchors:
        rows += learner.anchors(cfg.anchors, r)
    return rows


__all__ = ["SELECTORS", "Selector", "Sleeper", "SleepConfig", "bank_router", "probe_index", "router_for", "register_selector", "sleep"]
