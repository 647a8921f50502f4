"""The vLLM adapter: one engine per model, its arguments, lifecycle and OpenAI serving calls."""
