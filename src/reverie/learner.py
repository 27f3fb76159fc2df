"""The Python API: `Learner`.

    learner = Learner.load()               # embedded model and hypernetwork
    adapter = learner.inject(text)         # document -> weights, in one forward pass
    learner.ask("Where was Ada born?")     # answered from weights, text not in context
"""

from __future__ import annotations

from pathlib import Path

from reverie.base.model import DEFAULT_MODEL_DIR, BaseModel
from reverie.errors import ModelLoadError
from reverie.hypernet.adapter import Adapter
from reverie.hypernet.injectors import INJECTORS, HyperInjector, Injector
from reverie.hypernet.lora import merge
from reverie.hypernet.store import load_hypernet


def hypernet_dir(model: str | Path | None = None) -> Path:
    """Where a base model's own hypernetwork lives (its ``hypernet/`` folder)."""
    return Path(model or DEFAULT_MODEL_DIR) / "hypernet"


class Learner:
    """A base model whose weights take in what it reads."""

    def __init__(self, bm: BaseModel, injector: Injector):
        self.bm = bm
        self.injector = injector
        self.adapters: list[Adapter] = []

    @classmethod
    def load(cls, model: str | Path | None = None, hypernet: str | Path | None = None,
             injector: str = "hyper", **injector_kw) -> Learner:
        """Load a base model (default: embedded) and an injector (default: its hypernetwork)."""
        bm = BaseModel.load(model)
        if injector == "hyper":
            hp = Path(hypernet) if hypernet else hypernet_dir(model)
            if not hp.exists():
                raise ModelLoadError(f"no hypernetwork at {hp}: train one with `reverie train hypernet --export`")
            return cls(bm, HyperInjector(bm, load_hypernet(hp, bm)))
        if injector not in INJECTORS:
            raise ModelLoadError(f"unknown injector {injector!r} (known: {', '.join(INJECTORS)})")
        return cls(bm, INJECTORS[injector](bm, **injector_kw))

    def inject(self, text: str | bytes, queries: list[str] | None = None) -> Adapter:
        """Write ``text`` into the model's weights; returns the adapter that was merged."""
        ad = self.injector.inject(text, queries)
        merge(self.bm.model, ad.factors, ad.scale)
        self.adapters.append(ad)
        return ad

    def remove(self, adapter: Adapter) -> None:
        """Subtract a previously injected adapter from the weights."""
        merge(self.bm.model, adapter.factors, adapter.scale, sign=-1.0)
        self.adapters.remove(adapter)

    def ask(self, question: str | bytes, context: str | None = None) -> str:
        """Greedy answer from the weights (plus ``context`` if given)."""
        return self.bm.answer(question, context)
