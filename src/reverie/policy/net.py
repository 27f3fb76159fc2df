"""The policy network: a permutation-invariant scorer of buffered observations.

Each observation's feature row goes through a shared MLP; the rows' masked mean is the
night's context; a second MLP reads each row beside the context and gives its score, so
the network judges an observation against the others of its night ("the most repeated
tonight") and does not care about their order. The value head (for PPO's critic) reads
the pooled context. Saved and loaded as safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from reverie.errors import ModelLoadError
from reverie.policy.features import FEATURES, N_FEATURES

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "assets" / "default" / "policy"


class ItemScorer(nn.Module):
    """Feature rows (B, N, F) -> (scores (B, N), value (B,)); padding rows (``valid`` 0)
    score exactly 0 and do not enter the context."""

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 64):
        super().__init__()
        self.n_features, self.hidden = n_features, hidden
        self.item = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.mix = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.value = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = x[..., 0:1]  # (B, N, 1): FEATURES[0] is "valid"
        h = self.item(x) * valid  # (B, N, H)
        ctx = h.sum(1) / valid.sum(1).clamp(min=1.0)  # (B, H)
        scores = self.mix(torch.cat([h, ctx[:, None].expand_as(h)], -1)).squeeze(-1) * valid.squeeze(-1)  # (B, N)
        return scores, self.value(ctx).squeeze(-1)

    @torch.no_grad()
    def score(self, X) -> torch.Tensor:
        """Scores of one night's rows (N, F) (numpy or tensor): (N,)."""
        x = torch.as_tensor(X, dtype=torch.float32)[None]
        return self(x)[0][0]


def save(net: ItemScorer, path: str | Path, manifest: dict | None = None) -> Path:
    """``policy.safetensors`` and ``manifest.json`` (sizes, features, provenance)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(p / "policy.safetensors"))
    (p / "policy.safetensors").chmod(0o644)  # shipped as package data: readable by every user
    meta = {"n_features": net.n_features, "hidden": net.hidden, "features": list(FEATURES)} | (manifest or {})
    (p / "manifest.json").write_text(json.dumps(meta, indent=2) + "\n")
    return p


def load(path: str | Path | None = None) -> ItemScorer:
    """The policy in ``path`` (default: the shipped one). Raises :class:`ModelLoadError`."""
    p = Path(path or DEFAULT_POLICY_DIR)
    if not (p / "policy.safetensors").is_file() or not (p / "manifest.json").is_file():
        raise ModelLoadError(f"no consolidation policy at {p}: train one with `reverie train policy --export`")
    meta = json.loads((p / "manifest.json").read_text())
    if meta.get("features") != list(FEATURES):
        raise ModelLoadError(f"the policy at {p} was trained on other features ({meta.get('features')}); retrain it")
    net = ItemScorer(int(meta["n_features"]), int(meta["hidden"]))
    try:
        net.load_state_dict(load_file(str(p / "policy.safetensors")))
    except (RuntimeError, OSError) as e:
        raise ModelLoadError(f"cannot load the policy weights at {p}: {e}") from e
    return net.eval()


__all__ = ["DEFAULT_POLICY_DIR", "ItemScorer", "load", "save"]
