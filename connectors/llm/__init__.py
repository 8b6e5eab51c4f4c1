"""The language model behind the drivers' chat: an OpenAI-compatible client, its tools, cache and budgets."""
