"""Typed errors. Faces turn them into one clear line; workers decide retry from the type."""


class CrewdeskError(Exception):
    """Base for errors we expect and report without a traceback."""


class NotFound(CrewdeskError):
    """What was asked for does not exist (the API answers 404; the CLI prints it and exits 2)."""


class Conflict(CrewdeskError):
    """The request contradicts the state it meets: already decided, a forbidden transition (the API answers 409; the CLI exits 2)."""


class InvalidTicket(CrewdeskError):
    """Input that cannot become a processable ticket."""


class IllegalTransition(Conflict):
    """A ticket status change the state machine forbids."""


class TicketNotFound(NotFound):
    pass


class TransientError(CrewdeskError):
    """Might pass on the next try: timeouts, connection resets, a model server still starting."""


class AuditWriteFailed(TransientError):
    """An audit row could not be written: the step it records does not count, and the ticket is tried again."""


class ProviderUnavailable(TransientError):
    """A model endpoint failed in a way that may pass: HTTP 429 or 5xx, a timeout, a refused or reset connection. It counts
    against that endpoint's circuit breaker (crewdesk/llm/breaker.py); `retry_after` is the wait the endpoint asked for
    (its Retry-After header), in seconds, if it named one."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class ModelUnavailable(TransientError):
    """No model of the configured chain (the provider, then CREWDESK_LLM_FALLBACK) can take a call now: breakers open,
    rate limited, or all failing. The ticket is deferred, never failed: the worker runs it again in `retry_after` seconds,
    outside the retry budget of max_retries."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def deferral_of(exc: BaseException) -> float | None:
    """Seconds until a ticket whose run ended in `exc` should run again, when a ModelUnavailable is anywhere in the chain
    CrewAI and the pipeline may have wrapped it in; None when it is not a deferral."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModelUnavailable):
            return current.retry_after
        current = current.__cause__ or current.__context__
    return None


class ModelOutputError(CrewdeskError):
    """The model answered, but not with anything we can validate."""


class BudgetExhausted(ModelOutputError):
    """A ticket run used up its model calls or its time (CREWDESK_RUN_MAX_MODEL_CALLS, CREWDESK_RUN_MAX_SECONDS): its model
    work ends and the ticket goes to a person with a summary, as for any model that cannot finish."""


class LocalModelError(CrewdeskError):
    """The packaged local model could not be assembled or served."""


class Unauthenticated(CrewdeskError):
    """No credentials, or credentials that prove nobody (the API answers 401 with WWW-Authenticate)."""


class Forbidden(CrewdeskError):
    """The caller is known but may not do this: a scope it lacks, or a decision on its own request (the API answers 403)."""


class IdentityProviderUnavailable(CrewdeskError):
    """The OIDC provider's keys could not be fetched: a token is neither accepted nor called invalid (the API answers 503)."""
