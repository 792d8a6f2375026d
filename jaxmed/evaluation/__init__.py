"""Evaluation of trained generators: in-domain feature extractors (`features`) and the metrics and
memorisation audit of generated images against real ones (`generators`)."""
