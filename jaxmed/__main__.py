"""`python -m jaxmed` runs the command line."""

from jaxmed.cli import console

console()
