"""Saving and loading a trained hypernetwork (safetensors, config in the file's metadata)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_model, save_model

from reverie.base.model import BaseModel
from reverie.errors import ModelLoadError
from reverie.hypernet.lora import target_dims
from reverie.hypernet.model import HyperConfig, HyperNetwork, fingerprint
from reverie.utils import atomic_write_text, sha256_file

WEIGHTS = "hypernet.safetensors"


def build_config(bm: BaseModel, rank: int, targets: tuple[str, ...], **kw) -> HyperConfig:
    """A hypernetwork config shaped for the base model ``bm``."""
    return HyperConfig(
        n_layers=bm.n_layers, d_model=int(bm.config.hidden_size),
        targets={t: target_dims(bm.model, t) for t in targets}, rank=rank,
        base_fingerprint=fingerprint(bm.model), **kw,
    )


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
