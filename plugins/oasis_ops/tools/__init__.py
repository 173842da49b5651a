"""Command-line tools: the synthetic model generator, ``make demo`` and loss summaries."""
