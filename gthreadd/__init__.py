"""gthreadd: one daemon per GPU host serving many vLLM models on one OpenAI-compatible port."""
