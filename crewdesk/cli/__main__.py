"""`python -m crewdesk.cli`, as the `crewdesk` command."""

from crewdesk.cli import main

main()
