"""The Python API: `Learner`.

    learner = Learner.load()               # embedded model and hypernetwork
    adapter = learner.inject(text)         # document -> weights, in one forward pass
    learner.ask("Where was Ada born?")     # answered from weights, text not in context

    learner = Learner.load(memory="mem/")  # a persistent weight memory (reverie.memory)
    learner.consolidate([text])            # inject, pass the interference guard, merge, persist
    learner.forget(item_id)                # remove one item's contribution

    learner.read(text)                     # into the episodic buffer (answerable at once)
    learner.sleep()                        # select, inject, merge under the guard, replay

Every change to the model's weights (injection, the memory's consolidate, forget and
rollback, a bank's per-question routing) goes through one owner, ``learner.weights``
(``reverie.memory.Weights``), which composes them on the base weights kept once.
"""

from __future__ import annotations

import random
from pathlib import Path

from reverie.base.model import DEFAULT_MODEL_DIR, BaseModel, Generation, decode_input
from reverie.errors import ModelLoadError, ReverieError
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import INJECTORS, HyperInjector, Injector, check_text
from reverie.hypernet.model import fingerprint
from reverie.hypernet.store import load_hypernet
from reverie.memory import Guard, Memory, Weights, consolidate, memory_targets
from reverie.policy import selector as _learned_selector  # noqa: F401 - registers the ``learned`` selector
from reverie.sleep import learn as _learn_injector  # noqa: F401 - registers the ``learn`` injector
from reverie.sleep.buffer import Buffer, fit_context, memory_buffer
from reverie.sleep.cycle import SleepConfig, router_for


def hypernet_dir(model: str | Path | None = None) -> Path:
    """Where a base model's own hypernetwork lives: its ``hypernet/`` folder, or for a
    named real model (``smollm2``) the one shipped in this package."""
    from reverie.base.real import NAMED, shipped_hypernet

    if model is not None and str(model) in NAMED:
        return shipped_hypernet(str(model))
    return Path(model or DEFAULT_MODEL_DIR) / "hypernet"


def is_named_real(model: str | Path | None) -> bool:
    """Whether ``model`` names a real pretrained model this package knows (``smollm2``)."""
    from reverie.base.real import NAMED

    return model is not None and str(model) in NAMED


def default_strategy(model: str | Path | None) -> str:
    """A new memory's strategy when none is asked for: ``bank`` for a named real model
    (per-item adapters, routed per question), ``add`` for the embedded world model."""
    return "bank" if is_named_real(model) else "add"


class Learner:
    """A base model whose weights take in what it reads."""

    def __init__(self, bm: BaseModel, injector: Injector):
        self.bm = bm
        self.injector = injector
        self.weights = Weights(bm.model, router=router_for(bm))
        """The one owner of the model's weights: base, memory, injected adapters, routing."""
        self._guard: Guard | None = None
        self.buffer: Buffer | None = None
        self._anchors: list[tuple[str, str]] | None = None

    @property
    def memory(self) -> Memory | None:
        """The attached persistent memory, if any."""
        return self.weights.memory

    @property
    def adapters(self) -> list[Adapter]:
        """The adapters injected with :meth:`inject` and not removed, oldest first."""
        return self.weights.adapters

    @property
    def guard(self) -> Guard | None:
        """The interference guard every consolidated update passes (None: none)."""
        return self._guard

    @guard.setter
    def guard(self, guard: Guard | None) -> None:
        self._guard = guard

    def open_memory(self, path: str | Path, strategy: str = "add", guard: bool = True, **strategy_kw: float) -> Memory:
        """Attach a persistent weight memory (created if missing; its strategy is fixed then).
        With ``guard``, every consolidated update passes the interference guard."""
        from reverie.world import World

        if self._guard is None and guard:
            with self.weights.base():  # probes measured on the plain base model
                self._guard = Guard(self.bm, World())
        targets = memory_targets(self.bm.model, self.bm.n_layers, list(self.injector.target_names()))
        memory = Memory(path, fingerprint(self.bm.model), targets, strategy, dict(strategy_kw))
        self.weights.attach(memory)
        self.buffer = memory_buffer(memory)
        return memory

    def require_memory(self) -> Memory:
        """The attached memory; raises :class:`ReverieError` when none is."""
        if self.weights.memory is None:
            raise ReverieError("no memory attached: Learner.load(memory=DIR) or learner.open_memory(DIR)")
        return self.weights.memory

    def consolidate(self, texts: list[str | bytes]) -> list[str | None]:
        """Write texts into the persistent memory; returns item ids (None: refused by the guard)."""
        self.require_memory()
        docs = [check_text(t) for t in texts]
        if self.weights.is_bank and isinstance(self.injector, HyperInjector):
            return self._consolidate_chunks(docs)
        ads = self.injector.inject_many(docs)
        return consolidate(self.weights, ads, [a.meta["source_sha256"] for a in ads], self._guard, docs)

    def bank_pieces(self, text: str) -> list[tuple[str, dict]]:
        """How ``text`` goes into a bank: as itself, or, when longer than the window, as chunks
        of at most ``CHUNK_TOKENS`` tokens (also when it fits the window but not beside a
        probe question: ``PROBE_ROOM``) cut where its subject changes
        (reverie.memory.route.subject_chunks), each to be its own item; with each piece, the
        ledger fields that tie it to its document (``document_sha256``, ``chunk``, ``chunks``)
        and its routing ``key``. Summing many chunk adapters into one fails (``reverie bench
        long``); kept apart, a question is answered under the chunks that name what it asks."""
        import hashlib

        from reverie.memory.route import PROBE_ROOM, chunk_keys, subject_chunks

        inj = self.injector
        # Fitting beside a probe question implies fitting the window (one chunk); a token
        # covers at least one byte, so a short text needs no tokenizing.
        room = inj.limit - PROBE_ROOM if isinstance(inj, HyperInjector) else 0
        if not isinstance(inj, HyperInjector) or len(text.encode("utf-8")) <= room or inj.n_tokens(text) <= room:
            return [(text, {})]
        cs = subject_chunks(text, inj.n_tokens)
        sha = hashlib.sha256(text.encode()).hexdigest()
        return [(c, {"document_sha256": sha, "chunk": j, "chunks": len(cs), "key": k})
                for j, (c, k) in enumerate(zip(cs, chunk_keys(cs), strict=True))]

    def _consolidate_chunks(self, docs: list[str]) -> list[str | None]:
        """Into a bank, each text as its :meth:`bank_pieces`. Returns, per text, its item's id
        (a chunked text: its first stored chunk's)."""
        self.require_memory()
        pieces = [(n, c, x) for n, d in enumerate(docs) for c, x in self.bank_pieces(d)]
        ads = self.injector.inject_many([c for _, c, _ in pieces])
        ids = consolidate(self.weights, ads, [a.meta["source_sha256"] for a in ads], self._guard, [c for _, c, _ in pieces],
                          [x for _, _, x in pieces])
        out: list[str | None] = [None] * len(docs)
        for (n, _, _), item in zip(pieces, ids, strict=True):
            out[n] = out[n] or item
        return out

    def read(self, text: str | bytes) -> str:
        """Put an observation into the episodic buffer (persisted at once); returns its id.
        Until the next sleep it is in the working context of :meth:`ask`."""
        self.require_memory()
        assert self.buffer is not None
        return self.buffer.add(check_text(text)).id

    def sleep(self, cfg: SleepConfig | None = None, **kw) -> dict:
        """One sleep cycle over the buffer (see reverie.sleep.cycle); returns its report."""
        from dataclasses import replace

        from reverie.sleep.cycle import sleep

        self.require_memory()
        return sleep(self, replace(cfg or SleepConfig(), **kw))

    def working_context(self, question: str) -> str | None:
        """What was read since the last sleep, as much as fits the window beside ``question``."""
        return None if self.buffer is None else fit_context(self.bm, [o.text for o in self.buffer.items()], question)

    def anchors(self, n: int, r: random.Random) -> list[tuple[str, str]]:
        """``n`` closed-book questions about the base population with the *base* model's
        answers (memory detached): what replay pulls unrelated answers back to."""
        if self._anchors is None:
            from reverie.world import ATTRIBUTES, World

            w = World()
            # The last 96 base people, every attribute (the guard probes people drawn from all of them).
            qs = [w.question(p, a, random.Random(i)) for i, p in enumerate(w.base[-96:]) for a in ATTRIBUTES]
            with self.weights.base():
                answers = self.bm.answer_batch([self.bm.prompt(q.question) for q in qs])
            self._anchors = [(q.question, a) for q, a in zip(qs, answers, strict=True)]
        return r.sample(self._anchors, min(n, len(self._anchors)))

    def forget(self, item_id: str) -> bool:
        """Remove one memory item; returns whether the removal was exact."""
        exact = self.require_memory().forget(item_id)
        self.weights.refresh()
        return exact

    def snapshot(self, name: str) -> Path:
        """Save the memory's current state under ``name`` (see :meth:`rollback`)."""
        return self.require_memory().snapshot(name)

    def rollback(self, snapshot: str) -> None:
        """Return the memory to a snapshot; injected adapters stay in the weights."""
        self.require_memory().rollback(snapshot)
        self.weights.refresh()

    def export_merged(self, path: str | Path) -> Path:
        """The model with the memory (and any injected adapter) merged in, as a plain
        transformers model folder."""
        self.require_memory()
        return self.weights.export_merged(path, self.bm.tokenizer)

    def export_peft(self, path: str | Path) -> Path:
        """The memory as one peft LoRA adapter (an exact SVD factorisation of its delta); a
        bank memory as one adapter per item (see Memory.export_bank)."""
        self.require_memory()
        return self.weights.export_peft(path, self.bm.path)

    def close(self) -> None:
        """Detach the memory: the model's weights are the base model's again (injected
        adapters dropped too, so a model shared with another learner then starts clean), and
        the memory's files are released."""
        mem = self.weights.memory
        self.weights.release()
        if mem is not None:
            mem.close()

    @classmethod
    def load(cls, model: str | Path | None = None, hypernet: str | Path | None = None,
             injector: str | None = None, memory: str | Path | None = None, strategy: str | None = None,
             read_dtype: str | None = None, **injector_kw) -> Learner:
        """Load a base model (default: embedded) and an injector; with ``memory``, attach
        that persistent weight memory (see :meth:`open_memory`).

        Defaults by model: the embedded world model injects with its hypernetwork into an
        ``add`` memory; a named real model (``smollm2``) learns at sleep (the ``learn``
        injector: probes and a fitted LoRA, reverie.sleep.learn) into a ``bank`` memory
        (one adapter per item, routed per question), since its hypernetwork's adapters do
        not beat no context and summed adapters break unrelated answers.
        ``read_dtype`` is the hypernetwork's reading precision (``HyperInjector.read_dtype``);
        by default ``auto`` for a named real model, whose pass over a passage is most of an
        injection's time, and float32 for the embedded one, whose figures were all measured
        so and whose injection takes milliseconds."""
        real = is_named_real(model)
        injector = injector or ("learn" if real else "hyper")
        strategy = strategy or default_strategy(model)
        bm = BaseModel.load(model)
        if injector == "hyper":
            hp = Path(hypernet) if hypernet else hypernet_dir(model)
            if not hp.exists():
                raise ModelLoadError(f"no hypernetwork at {hp}: train one with `reverie train hypernet --export`")
            if read_dtype is None:
                read_dtype = "auto" if real else "float32"
            learner = cls(bm, HyperInjector(bm, load_hypernet(hp, bm), read_dtype=read_dtype))
        elif injector not in INJECTORS:
            raise ModelLoadError(f"unknown injector {injector!r} (known: {', '.join(INJECTORS)})")
        else:
            learner = cls(bm, INJECTORS[injector](bm, **injector_kw))
        if memory is not None:
            learner.open_memory(memory, strategy)
        return learner

    def inject(self, text: str | bytes, queries: list[str] | None = None) -> Adapter:
        """Write ``text`` into the model's weights; returns the adapter that was merged. It
        stays there, on top of the memory, through consolidate, forget and rollback."""
        ad = self.injector.inject(text, queries)
        self.weights.inject(ad)
        return ad

    def remove(self, adapter: Adapter) -> None:
        """Take a previously injected adapter out of the weights (exactly: they are
        recomposed without it)."""
        self.weights.remove(adapter)

    def ask(self, question: str | bytes, context: str | None = None, working: bool = True,
            gen: Generation | None = None) -> str:
        """Greedy answer from the weights plus ``context`` if given, else (with ``working``)
        the working context: what was read since the last sleep, as much as fits; ``gen``:
        how it is generated (None: :class:`Generation`'s defaults)."""
        if context is None and working and self.buffer is not None and len(self.buffer):
            context = self.working_context(decode_input(question))
        with self.weights.answering(decode_input(question)):
            return self.bm.answer(question, context, gen)

    def route(self, question: str | bytes) -> str | None:
        """With a ``bank`` memory: the item whose adapter answers ``question`` (None: no item
        is about it, the weights alone answer). Other memories are merged: always None."""
        items = self.routes(question)
        return items[0] if items else None

    def routes(self, question: str | bytes) -> list[str]:
        """With a ``bank`` memory: the items ``question`` is answered under (the best one, and
        when it is a chunk of a long text, that text's other chunks that match); else []."""
        return self.weights.routes(decode_input(question))
