"""The `fedarena` command."""
