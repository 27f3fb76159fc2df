"""`Adapter`: the weight delta written for one document, saved in peft's LoRA format.

On disk: ``adapter_config.json`` (a peft ``LoraConfig``) and ``adapter_model.safetensors``
with peft's key names, so ``peft.PeftModel.from_pretrained(base, dir)`` loads it as is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reverie.errors import ModelLoadError
from reverie.hypernet.lora import Factors


@dataclass
class Adapter:
    """LoRA factors for every layer and target: A (L, R, d_in), B (L, d_out, R)."""

    factors: Factors
    scale: float
    """The delta is ``scale * B @ A`` (peft: lora_alpha / r)."""
    layer_prefix: str = "model.layers"
    """Where the layers live in the base model (peft key names depend on it)."""
    meta: dict = field(default_factory=dict)
    """Free-form provenance (source hash, injector, timing)."""

    @property
    def rank(self) -> int:
        return next(iter(self.factors.values()))[0].shape[-2]

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.factors.values())

    def parts(self) -> tuple[Factors, Factors | None]:
        """(document ranks, bias ranks or None) in float32 with ``scale`` folded into B.

        A hypernetwork adapter carries its context-independent bias as its last
        ``meta['bias_rank']`` ranks; a memory must add that bias once, not once per item."""
        rb = int(self.meta.get("bias_rank", 0))
        f = {t: (A.float(), B.float() * self.scale) for t, (A, B) in self.factors.items()}
        if not rb:
            return f, None
        return ({t: (A[:, :-rb], B[..., :-rb]) for t, (A, B) in f.items()},
                {t: (A[:, -rb:], B[..., -rb:]) for t, (A, B) in f.items()})

    def bias_only(self) -> Adapter | None:
        """The context-independent bias ranks alone as an adapter (scale folded in), or None
        for an adapter without them."""
        bias = self.parts()[1]
        return None if bias is None else Adapter(bias, 1.0, self.layer_prefix)

    def delta_norm(self) -> float:
        """Frobenius norm of the full delta over all layers and targets."""
        tot = 0.0
        for A, B in self.factors.values():
            for layer in range(A.shape[0]):
                tot += float((self.scale * B[layer] @ A[layer]).pow(2).sum())
        return tot ** 0.5

    def save(self, path: str | Path, base_model_path: str = "") -> Path:
        """Write peft's adapter format into ``path``."""
        from peft import LoraConfig

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        r = self.rank
        cfg = LoraConfig(r=r, lora_alpha=self.scale * r,  # type: ignore[arg-type]  # peft takes a float here too
                         lora_dropout=0.0, bias="none",
                         task_type="CAUSAL_LM", base_model_name_or_path=base_model_path,
                         target_modules=sorted({t.split(".")[-1] for t in self.factors}))
        cfg.save_pretrained(str(p))
        tensors = {}
        for t, (A, B) in self.factors.items():
            for layer in range(A.shape[0]):
                key = f"base_model.model.{self.layer_prefix}.{layer}.{t}"
                tensors[f"{key}.lora_A.weight"] = A[layer].contiguous().float()
                tensors[f"{key}.lora_B.weight"] = B[layer].contiguous().float()
        save_file(tensors, str(p / "adapter_model.safetensors"),
                  metadata={"reverie": json.dumps({"scale": self.scale, "meta": self.meta})})
        return p

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        """Read an adapter saved by :meth:`save` (or any peft LoRA on the same layout)."""
        p = Path(path)
        cfg_p, w_p = p / "adapter_config.json", p / "adapter_model.safetensors"
        if not cfg_p.is_file() or not w_p.is_file():
            raise ModelLoadError(f"not an adapter directory (needs adapter_config.json and adapter_model.safetensors): {p}")
        try:
            cfg = json.loads(cfg_p.read_text())
            tensors = load_file(str(w_p))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"corrupt adapter in {p}: {e}") from e
        pat = re.compile(r"base_model\.model\.(.+?)\.(\d+)\.(.+)\.lora_([AB])\.weight$")
        found: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
        prefix = "model.layers"
        for k, v in tensors.items():
            m = pat.match(k)
            if m:
                prefix = m.group(1)
                found.setdefault(m.group(3), {}).setdefault(int(m.group(2)), {})[m.group(4)] = v
        factors = {t: (torch.stack([d[i]["A"] for i in sorted(d)]), torch.stack([d[i]["B"] for i in sorted(d)]))
                   for t, d in found.items()}
        if not factors:
            raise ModelLoadError(f"no LoRA weights found in {w_p}")
        return cls(factors, float(cfg["lora_alpha"]) / float(cfg["r"]), prefix)
