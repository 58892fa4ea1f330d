"""Typed errors. Faces turn them into one clear line; workers decide retry from the type."""


class CrewdeskError(Exception):
    """Base for errors we expect and report without a traceback."""


class InvalidTicket(CrewdeskError):
    """Input that cannot become a processable ticket."""


class IllegalTransition(CrewdeskError):
    """A ticket status change the state machine forbids."""


class TicketNotFound(CrewdeskError):
    pass


class TransientError(CrewdeskError):
    """Might pass on the next try: timeouts, connection resets, a model server still starting."""


class ModelOutputError(CrewdeskError):
    """The model answered, but not with anything we can validate."""


class LocalModelError(CrewdeskError):
    """The packaged local model could not be assembled or served."""
