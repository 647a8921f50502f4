"""Weight tiers: disk (the converted model store), pinned host RAM, device memory."""
