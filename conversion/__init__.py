"""Turning checkpoints into what the engines load: resolve sources, convert formats."""
