"""Studies that combine training runs to answer a research question."""
