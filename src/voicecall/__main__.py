"""`python -m voicecall` runs the CLI."""

from voicecall.cli.app import main

main()
