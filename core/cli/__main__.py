"""`python -m fedarena.core.cli`: the `fedarena` command."""

from fedarena.core.cli.main import console_main

console_main()
