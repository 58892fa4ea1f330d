"""The record of what came in on every channel: each inbound item once (and what became of it), how far each mailbox
was read, and each backlog import. Tables only: the intake channels (crewdesk.intake) fill them. They sit here, among
the domains and below the channels, because tickets refer to backlog imports and inbound items refer to tickets."""
