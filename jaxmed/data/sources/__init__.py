"""Readers for image data that researchers bring on disk (folders of scans)."""
