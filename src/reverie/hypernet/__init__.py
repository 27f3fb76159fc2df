"""The hypernetwork, LoRA mechanics, adapters and injectors."""
