"""Saving and loading a trained hypernetwork (safetensors, config in the file's metadata),
and warm-starting one from another, grown to a higher rank where asked."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_model

from reverie.base.model import BaseModel
from reverie.errors import ModelLoadError, ReverieError
from reverie.hypernet.lora import layers_of, target_dims
from reverie.hypernet.model import HyperConfig, HyperNetwork, fingerprint
from reverie.utils import atomic_write_text, load_train_state, read_state, sha256_file

WEIGHTS = "hypernet.safetensors"


def build_config(bm: BaseModel, rank: int, targets: tuple[str, ...], **kw) -> HyperConfig:
    """A hypernetwork config shaped for the base model ``bm``; a target that is not a Linear
    module of every layer is a clear error naming the ones that are."""
    dims = {}
    for t in targets:
        try:
            dims[t] = target_dims(bm.model, t)
        except (AttributeError, ValueError):
            raise ReverieError(f"target {t!r} is not a Linear module of the model's layers "
                               f"(these are: {', '.join(linear_targets(bm))})") from None
    if not dims:
        raise ReverieError("no target modules given (e.g. mlp.down_proj)")
    return HyperConfig(n_layers=bm.n_layers, d_model=int(bm.config.hidden_size), targets=dims, rank=rank,
                       base_fingerprint=fingerprint(bm.model), **kw)


def linear_targets(bm: BaseModel) -> list[str]:
    """Names of the Linear modules inside a layer (what ``--targets`` may name)."""
    return [n for n, m in layers_of(bm.model)[0].named_modules() if isinstance(m, torch.nn.Linear)]


def save_hypernet(hyper: HyperNetwork, dest: Path, manifest: dict) -> Path:
    """Write weights (config in metadata) and a manifest into ``dest`` atomically."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # float16 on disk halves what the repository carries; loading casts back to float32.
    save_model(copy.deepcopy(hyper).half(), str(tmp / WEIGHTS), metadata={"config": hyper.cfg.to_json(), "dtype": "float16"})
    manifest = {**manifest, "config": json.loads(hyper.cfg.to_json()),
                "parameters": sum(p.numel() for p in hyper.parameters()),
                "sha256": {WEIGHTS: sha256_file(tmp / WEIGHTS)}}
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def load_hypernet(path: str | Path, bm: BaseModel | None = None) -> HyperNetwork:
    """Load a hypernetwork; with ``bm``, refuse one built for a different base model."""
    p = Path(path)
    f = p / WEIGHTS if p.is_dir() else p
    if not f.is_file():
        raise ModelLoadError(f"no hypernetwork found at {p}")
    try:
        with safe_open(str(f), "pt") as sf:
            cfg = HyperConfig.from_json((sf.metadata() or {})["config"])
        hyper = HyperNetwork(cfg)
        load_model(hyper, str(f))
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"corrupt or incompatible hypernetwork file {f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if bm is not None and cfg.base_fingerprint != fingerprint(bm.model):
        raise ModelLoadError(f"hypernetwork {f} was built for another base model "
                             f"(fingerprint {cfg.base_fingerprint}, this model {fingerprint(bm.model)})")
    return hyper.eval()


GROW_SCALE = 0.3
"""A grown hypernetwork's new components start with this share of the old scalers."""


def warm_start(hyper: HyperNetwork, init: str) -> None:
    """Load ``init``'s weights into ``hyper``: a run folder (ckpt/model.safetensors) or a
    hypernetwork folder; a mismatched shape is a clear error, not a traceback."""
    src = Path(init)
    f = next((x for x in (src / "ckpt" / "model.safetensors", src / "hypernet.safetensors") if x.is_file()), None)
    if f is None:
        raise ReverieError(f"--init {init}: neither a run folder (ckpt/model.safetensors) nor a hypernetwork folder")
    try:
        hyper.load_state_dict(grown(hyper, load_file(str(f))))
    except RuntimeError as e:
        raise ReverieError(f"--init {init}: its weights do not fit this hypernetwork ({str(e).splitlines()[0]})") from None


def resume_or_init(ck: Path, hyper: HyperNetwork, opt: torch.optim.Optimizer, init: str | None) -> tuple[int, float]:
    """Resume a run from its checkpoint folder ``ck`` (weights and optimizer), or start a new
    one from ``init``'s weights; returns (step, elapsed seconds). A checkpoint of another base
    model is a clear error."""
    state = read_state(ck)
    if state is None:
        if init is not None:
            warm_start(hyper, init)
        return 0, 0.0
    if state["fingerprint"] != hyper.cfg.base_fingerprint:
        raise ReverieError(f"checkpoint in {ck} was trained on another base model; use another --out")
    if "config" in state:
        old = HyperConfig.from_json(state["config"])
        diff = [f"{k} {getattr(old, k)} (now {getattr(hyper.cfg, k)})" for k in ("targets", "rank", "latent_dim", "n_blocks")
                if getattr(old, k) != getattr(hyper.cfg, k)]
        if diff:
            raise ReverieError(f"checkpoint in {ck} has another shape: {'; '.join(diff)}; "
                               "rerun with its options or use another --out")
    load_train_state(ck, hyper, opt)
    return state["step"], state["elapsed"]


def grown(hyper: HyperNetwork, state: dict[str, torch.Tensor], share: float = GROW_SCALE) -> dict[str, torch.Tensor]:
    """``state`` with its rank raised to ``hyper``'s, where it was trained at a lower rank.

    Only the latents (one per target and rank component) and the per-rank scalers depend on
    the rank; the heads are shared by all components. The new components get ``hyper``'s
    fresh latents and ``share`` x the old scalers (drawn in a shuffled order), so the grown
    hypernetwork starts near the old one (its scale alpha / rank is held at 1 by the recipe)
    with new components that training can use. Two ways that kept the old delta exactly
    failed: with zero scalers the new ones stayed at 0.001-0.002 against the old ones' 0.1
    after 200-400 steps (a component with a zero scaler gets no gradient into its latent,
    and its scaler's own gradient averages out); splitting each old component in two
    (Net2Net: copies sharing its scaler, noise on their latents) ended with the copies at a
    cosine of 0.9999 after 400 steps."""
    nt, r = len(hyper.names), hyper.cfg.rank
    lat, sc = state.get("latents"), state.get("scale")
    if lat is None or sc is None or sc.shape[-1] >= r or sc.shape[:-1] != hyper.scale.shape[:-1]:
        return state
    r0 = sc.shape[-1]
    latents = hyper.latents.detach().clone().reshape(nt, r, -1)  # (nt, r, D)
    latents[:, :r0] = lat.reshape(nt, r0, -1).to(latents.dtype)
    old = sc.to(hyper.scale.dtype)  # (L, nt, r0)
    pick = torch.randperm(r0)[torch.arange(r - r0) % r0]
    scale = torch.cat([old, share * old[..., pick]], -1)  # (L, nt, r)
    return {**state, "latents": latents.reshape(nt * r, -1), "scale": scale}
