"""gthreadd: one daemon per GPU host serving many vLLM models on one OpenAI-compatible port."""

__version__ = "0.1.0"
"""The one place the version lives: the package metadata, `--version`, the image's tag and labels
and the chart's appVersion all read it."""
