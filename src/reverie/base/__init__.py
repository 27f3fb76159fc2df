"""The base model: a wrapper over any local causal LM, and the embedded default."""
