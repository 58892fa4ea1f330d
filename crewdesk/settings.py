"""The one settings object (CREWDESK_* environment variables or .env); loaded explicitly, never at import."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent  # the checkout, when crewdesk runs from one (an editable install); site-packages otherwise
BUNDLED_DIR = PACKAGE_DIR / "_bundled"  # the wheel's copies of agents/, tasks/, migrations/ and alembic.ini (setup.py)


def project_path(name: str) -> Path:
    """Where one of the project's top-level data folders or files (agents, tasks, migrations, alembic.ini) is read from:
    the checkout's own when crewdesk runs from a checkout or an editable install, else the copy bundled in the wheel."""
    checkout = PROJECT_ROOT / name
    if (PROJECT_ROOT / "pyproject.toml").is_file() and checkout.exists():
        return checkout
    return BUNDLED_DIR / name


class LLMProvider(StrEnum):
    local = "local"
    openai = "openai"
    anthropic = "anthropic"
    scripted = "scripted"


ENV_PREFIX = "CREWDESK_"


class SecretFiles(PydanticBaseSettingsSource):
    """CREWDESK_<NAME>_FILE=/path in the environment: the setting <NAME> is that file's content, stripped (Docker
    secrets under /run/secrets/, as the compose file mounts them). Setting both CREWDESK_<NAME> and its _FILE is an
    error, not a silent choice."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # the values come from __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            env = f"{ENV_PREFIX}{name.upper()}"
            path = environ.get(f"{env}_FILE")
            if not path:
                continue
            if env in environ:
                raise SettingsError(f"{env} and {env}_FILE are both set: give one")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"{env}_FILE: cannot read {path}: {exc.strerror}") from None
        return values


def with_password(url: str, password: str) -> str:
    """`url` (a database or broker URL without a password) with `password` in it, quoted for a URL."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ValueError(f"{parts.scheme} URL already carries a password: give it once, in the URL or in its *_password setting")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{host}"))


class Settings(BaseSettings):
    """Every knob crewdesk reads. `.env.example` lists each name."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    home: Path = Field(default=Path.home() / ".crewdesk", description="State dir: SQLite db, assembled model, CrewAI storage.")
    cache_dir: Path | None = Field(
        default=None,
        description="Derived data: the routing and risk exemplars' vectors (rebuilt when missing, about two minutes on one thread); "
        "empty = home/cache. Several homes may share one.",
    )
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite under home.")
    database_password: SecretStr = Field(
        default=SecretStr(""), description="Put into database_url when that has no password (e.g. CREWDESK_DATABASE_PASSWORD_FILE=/run/secrets/...)."
    )
    app_db_role: str = Field(
        default="",
        description="PostgreSQL: the role the API and workers log in as; `crewdesk init` (run as the tables' owner) creates it and grants "
        "it only what crewdesk does (no table owned, audit tables append-only); empty = none.",
    )
    app_db_password: SecretStr = Field(default=SecretStr(""), description="The app_db_role's login password, set by `crewdesk init`; empty = left as it is.")
    broker_url: str = "redis://127.0.0.1:6379/0"
    broker_password: SecretStr = Field(default=SecretStr(""), description="Put into broker_url when that has no password (Redis requirepass).")
    visibility_timeout: int = Field(default=1800, description="Seconds before Redis redelivers an unacked ticket; > task_time_limit.")
    unacked_restore_interval: int = Field(default=30, description="Seconds between the broker's sweeps for unacked tickets past visibility_timeout.")
    task_time_limit: int = Field(default=900, description="Hard limit for one ticket's crew run, seconds.")
    reconcile_seconds: float = Field(default=60.0, ge=0, description="Seconds between the reconciler's sweeps (Celery beat); 0 turns it off.")
    reconcile_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A ticket not terminal, not waiting for a person, and unchanged this long "
        "while the broker holds no message for it is put back on the queue.",
    )
    task_max_retries: int = 3
    worker_concurrency: int = 2

    llm_provider: LLMProvider = Field(default=LLMProvider.local, description="local | openai | anthropic | scripted")
    llm_model_cheap: str = Field(default="", description="Model for the cheap tier (routing); empty = provider default.")
    llm_model_strong: str = Field(default="", description="Model for the strong tier (specialists); empty = provider default.")
    llm_timeout: float = 300.0
    llm_max_tokens: int = 700
    llm_temperature: float = 0.1
    run_max_model_calls: int = Field(
        default=30, ge=1, description="Model calls one ticket run may make, every phase together; then a person takes the ticket with a summary."
    )
    handoff_model_summary: bool = Field(
        default=True, description="A hand-over to a person adds one short model sentence on what the customer asks to its template summary."
    )
    run_max_seconds: float = Field(
        default=55.0, gt=0, description="Wall time one ticket run's model calls may reach (an answer in flight is cut at it); then a person takes the ticket."
    )
    conversation_max_questions: int = Field(
        default=3,  # who, which, and the write stated for a yes
        ge=0,
        description="Questions one ticket may put to the customer (which item, confirm a write, a missing detail) before a person takes it; 0: "
        "never ask, a question hands the ticket to a person as before.",
    )
    conversation_remind_after_hours: float = Field(
        default=48.0, ge=0, description="A ticket waiting on the customer this long gets one reminder in their language; 0 = no reminder."
    )
    conversation_close_after_hours: float = Field(
        default=168.0, ge=0, description="A ticket waiting on the customer this long is closed as no_reply (a late reply still resumes it); 0 = never."
    )
    conversation_sweep_seconds: int = Field(
        default=900, ge=0, description="How often Celery beat looks for waiting tickets to remind or close; 0 = never (e.g. run by cron instead)."
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", description="Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama (http://host:11434/v1)."
    )
    openai_api_key: SecretStr = SecretStr("")
    anthropic_api_key: SecretStr = SecretStr("")
    anthropic_base_url: str = ""
    scripted_latency_ms: int = Field(default=0, description="Scripted provider: sleep per call, to simulate a model.")
    llm_fallback: str = Field(
        default="",
        description="Models that take a call the provider cannot (its circuit open, rate limited, failing), in order: "
        "comma-separated provider[:model][@base_url], e.g. local or openai:gpt-4o-mini,local; empty = none (the ticket is deferred).",
    )
    llm_breaker_failures: int = Field(
        default=5, ge=1, description="Transient failures in a row (429, 5xx, timeouts, refused connections) that open a model endpoint's circuit breaker."
    )
    llm_breaker_reset_seconds: float = Field(default=60.0, gt=0, description="Seconds an open circuit stays open before one trial call (half-open).")
    llm_breaker_prefix: str = Field(default="crewdesk:breaker", description="Redis key prefix of the breakers' shared state (on the broker's Redis).")

    local_model_path: Path | None = Field(default=None, description="A GGUF file to serve instead of the packaged Qwen2.5-Coder-1.5B.")
    local_host: str = "127.0.0.1"
    local_port: int = 8765
    local_ctx: int = Field(default=8192, description="Context tokens per llama-server slot.")
    local_threads: int = Field(default=0, description="llama.cpp threads; 0 = one per core.")
    local_parallel: int = Field(default=2, description="llama-server slots: requests served at once (one per worker child), each with its prompt cache.")
    local_server_bin: Path | None = Field(
        default=None, description="The llama-server executable; empty = the one scripts/setup.sh installs beside Python, or PATH."
    )
    local_start_timeout: float = 180.0

    approval_threshold_usd: float = Field(
        default=100.0, description="A write that would refund more than this waits for a person; negative disables approvals."
    )
    second_approval_above_usd: float = Field(
        default=500.0,
        description="A write waiting for approval whose refund brings the ticket's or the customer's 24 h total above this needs two "
        "approvals by two different people; negative: one approval always.",
    )
    max_tool_calls_per_ticket: int = Field(default=30, description="Gate rate limit: tool calls allowed in one ticket run.")
    identity_claimed_writes: list[str] = Field(
        default_factory=lambda: ["eval", "example"],
        description="Ticket sources where a customer identified only by a claim (an unverified e-mail From, an e-mail address or name "
        "and zip in the text) may still have writes made: the evaluations, whose tau2 policy authenticates by the ticket's text. "
        "Elsewhere such a write waits for a person (rule identity_unverified); reads are allowed either way (JSON list).",
    )
    procedures: bool = Field(
        default=True, description="Run tickets whose intents all have a procedure (tasks/procedures/) as procedures; the rest go to the crew."
    )
    reading_arbiter: Literal["reader", "model", "ask"] = Field(
        default="reader",
        description="Where the request reader and the old rules read a ticket's items differently: reader (its reading stands), "
        "model (one constrained choice between the two; for a model that can make it), ask (the customer is asked).",
    )
    model_choices: Literal["confirm", "act"] = Field(
        default="confirm",
        description="Items the model chose (the customer described them rather than named them): confirm (the customer is asked "
        "to confirm the model's reading before anything is written) or act (written at once; for a model that reads well).",
    )
    confirm_writes: Literal["policy", "off"] = Field(
        default="policy",
        description="policy: the procedures marked `confirm: true` (tasks/procedures/procedures.yaml) state each write whole in the "
        "reply and make it only on the customer's yes; off: written at once (one-shot use, the evaluation's ticket protocol).",
    )
    write_check: Literal["model", "audit", "off"] = Field(
        default="model",
        description="Before an item write is made without the customer's yes (confirm_writes off, or a procedure without `confirm:`), "
        "the model answers one yes/no per item: does the customer ask for this? model: a doubted item holds the write as a "
        "proposal for the customer's yes; audit: asked and recorded (decision/write_checked), nothing held; off: not asked.",
    )
    model_reading: Literal["cross", "audit", "off"] = Field(
        default="off",
        description="The model's own typed reading of the ticket (crews/procedures/extract.py: one schema-constrained decision "
        "grounded in the customer's orders and items), compared with the rules' planned writes before they are made. cross: a "
        "write the model's reading does not hold is stated for the customer's yes instead; audit: read and recorded "
        "(decision/model_reading), nothing held; off (the default): not asked. Off because the packaged 1.5B reads a ticket "
        "this way right 1 time in 79 (bench/extract_probe.py, README); for a model that reads well.",
    )
    write_check_min_yes: float = Field(
        default=0.3, ge=0.0, le=1.0, description="The probability of yes (from the model's token probabilities) an item needs to be written unasked."
    )
    order_check_min_yes: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="A named open order nothing was done about, whose probability of a request (the model's yes) is at least this, keeps the ticket from resolved.",
    )
    risk_model_check: Literal["on", "off"] = Field(
        default="on",
        description="A risk hit that rests on the MiniLM risk classifier alone (not a regex that says the risk on its own; never "
        "injection) is put to the ticket's model as one yes/no question; below CREWDESK_RISK_MODEL_MIN_YES it is dropped "
        "(audited: decision/risk_checked). A model that cannot answer leaves the hit: the ticket is escalated.",
    )
    risk_model_min_yes: float = Field(
        default=0.2, ge=0.0, le=1.0, description="The probability of yes (the model's token probabilities) a classifier's risk hit needs to stand."
    )
    router_confidence: float = Field(
        default=0.35,
        description="A routed ticket whose router confidence is below this goes to a person (the embedding router's scale, not the triage model's).",
    )
    router: Literal["embedding", "hybrid", "model"] = Field(
        default="embedding",
        description="How intents are found: embedding (MiniLM over labelled examples), hybrid (the model breaks close calls), model (one constrained call).",
    )
    crew_process: Literal["sequential", "hierarchical"] = Field(
        default="sequential", description="sequential: routing -> one specialist -> escalation; hierarchical: a manager delegates to several specialists."
    )
    crew_process_by_category: dict[str, Literal["sequential", "hierarchical"]] = Field(
        default_factory=dict, description='Per ticket category, as JSON, e.g. {"billing": "hierarchical"}.'
    )
    pii_redaction: bool = Field(default=True, description="Replace emails, phones, cards, IBANs and addresses by tokens before text reaches a model.")
    escalation_confidence: float = Field(default=0.5, description="Triage confidence below this escalates to a human.")
    repeat_contact_days: int = 30
    repeat_contact_threshold: int = 2

    # E-mail intake (IMAP) and replies (SMTP). Empty host = that part is off.
    imap_host: str = Field(default="", description="IMAP server polled for tickets; empty = no polling.")
    imap_port: int = Field(default=993, description="993 for implicit TLS; 143 with imap_starttls or on loopback.")
    imap_tls: Literal["ssl", "starttls", "none"] = Field(default="ssl", description="ssl | starttls | none (none only for loopback test servers).")
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = Field(default="INBOX", description="Folder read for new tickets.")
    imap_processed_folder: str = Field(default="", description="Move committed messages here; empty = mark them \\Seen and leave them.")
    imap_idle: bool = Field(
        default=True,
        description="Between polls, `crewdesk email poll` waits with IMAP IDLE and polls as soon as mail arrives (when the server offers IDLE); false = it sleeps imap_poll_seconds.",
    )
    imap_poll_seconds: int = Field(default=60, description="Seconds between mailbox polls (Celery beat).")
    smtp_host: str = Field(default="", description="SMTP server for replies; empty = e-mail replies are not sent.")
    smtp_port: int = 587
    mail_ca_file: str = Field(
        default="", description="PEM file of CA certificates trusted for IMAP and SMTP TLS besides the system's (a private CA); empty = the system's only."
    )
    smtp_tls: Literal["ssl", "starttls", "none"] = Field(default="starttls", description="ssl | starttls | none (none only for loopback test servers).")
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    support_address: str = Field(default="support@example.com", description="Our From address; mail from it (or with our headers) is never answered.")
    email_authserv_id: str = Field(
        default="",
        description="The authserv-id our own MTA writes in Authentication-Results (RFC 8601): a From with dmarc=pass for its domain "
        "there is verified; fields with another id are ignored (a sender can write them). Empty = no e-mail sender is verified.",
    )
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, description="Larger attachments are recorded but not stored.")
    attachment_types: list[str] = Field(
        default_factory=lambda: ["image/*", "application/pdf", "text/plain", "text/csv", "message/rfc822"],
        description="MIME types stored (JSON list; type/* wildcards); others are recorded but not stored.",
    )

    # Jira Service Management.
    oidc_issuer: str = Field(default="", description="OIDC: the issuer whose bearer tokens the API accepts beside API keys (its `iss`); empty = API keys only.")
    oidc_audience: str = Field(default="crewdesk", description="OIDC: the `aud` a token must carry.")
    oidc_jwks_url: str = Field(default="", description="OIDC: the issuer's JWKS; empty = its jwks_uri from /.well-known/openid-configuration.")
    oidc_scope_claim: str = Field(default="scope", description="OIDC: the claim holding crewdesk's scopes (a space-separated string or a list).")
    jira_base_url: str = Field(default="", description="e.g. https://acme.atlassian.net; empty = replies are not posted to Jira.")
    jira_user: str = Field(default="", description="Account e-mail for the REST API (basic auth with an API token).")
    jira_api_token: SecretStr = SecretStr("")
    jira_webhook_secret: SecretStr = Field(default=SecretStr(""), description="Secret of the Jira webhook; requests must carry its HMAC in X-Hub-Signature.")
    jira_refusals_per_minute: int = Field(
        default=30,
        ge=0,
        description="Refused webhook deliveries (forged, malformed) recorded per client address per minute; beyond it they get 429 and are only counted; 0 = no limit.",
    )
    jira_status_on_resolved: str = Field(
        default="",
        description="Jira status to move an issue to (by the transition that leads there) after crewdesk resolves its ticket and the reply is posted, e.g. Resolved; empty = leave Jira's status alone.",
    )
    jira_status_on_escalated: str = Field(
        default="",
        description="Jira status to move an issue to when crewdesk hands its ticket to a person, e.g. Escalated or Waiting for support; empty = leave it.",
    )
    jira_status_on_waiting: str = Field(
        default="",
        description="Jira status to move an issue to when crewdesk asks the customer a question and waits for the answer, e.g. Waiting for customer; empty = leave it.",
    )
    jira_bot_account_id: str = Field(default="", description="accountId (or name on Server) crewdesk posts as; its comments never start a run.")
    jira_webhook_max_age_seconds: int = Field(
        default=1800,
        ge=1,
        description="A webhook delivery whose payload timestamp is older than this (or over a minute ahead) is refused as stale or replayed.",
    )

    # API limits (issue 20).
    api_max_body_bytes: int = Field(default=1_048_576, ge=0, description="Request bodies over this many bytes are refused with 413; 0 = no limit.")
    api_rate_limit: str = Field(
        default="60/minute",
        description="Per caller (API key or OIDC subject): submitting and writing on tickets, and deciding approvals, each; `limits` notation, e.g. 60/minute or 10/second;100/hour; empty = no limit.",
    )

    # The support console (issue 22): served by `crewdesk api` under /console.
    console_secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs the console's session cookies (at least 32 characters, e.g. `openssl rand -hex 32`; or CREWDESK_CONSOLE_SECRET_KEY_FILE); empty = no console, unless console_dev.",
    )
    console_dev: bool = Field(
        default=False,
        description="Development only: without console_secret_key, sign sessions with a key made per process; session cookies without Secure (plain http on localhost).",
    )
    console_session_hours: float = Field(default=8.0, gt=0, description="A console login lasts this long, then the user logs in again.")
    console_login_failures_per_minute: int = Field(
        default=5,
        ge=0,
        description="After this many failed console logins in a minute for one user name or from one address, the next is refused (429) until the minute has passed; 0 = no limit.",
    )
    console_oidc_issuer: str = Field(
        default="",
        description="Console OIDC login: the provider's issuer (its discovery document is <issuer>/.well-known/openid-configuration; https, or http on loopback); empty = no OIDC login.",
    )
    console_oidc_client_id: str = Field(default="", description="Console OIDC login: crewdesk's client id at the provider (the ID token's audience).")
    console_oidc_client_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Console OIDC login: the client secret (or CREWDESK_CONSOLE_OIDC_CLIENT_SECRET_FILE); empty = a public client (PKCE only).",
    )
    console_oidc_name: str = Field(default="", description="Console OIDC login: the provider's name on the login page's button; empty = the issuer's host.")
    console_oidc_scopes: str = Field(default="openid profile email", description="Console OIDC login: the scopes asked for (openid is always asked).")
    console_oidc_role_claim: str = Field(
        default="groups",
        description="Console OIDC login: the ID token claim holding the person's groups or roles (a list or a string; dots reach inside, e.g. realm_access.roles).",
    )
    console_oidc_roles: dict[str, str] = Field(
        default={},
        description='Console OIDC login: JSON map from a value of the role claim to a crewdesk role (agent, lead, admin), e.g. {"support":"agent","support-leads":"lead"}; the highest mapped role wins; a person with none is refused.',
    )
    console_oidc_redirect_url: str = Field(
        default="",
        description="Console OIDC login: the callback URL registered at the provider; empty = <the console's URL>/login/oidc/callback as the request reached it.",
    )
    console_password_login: bool = Field(default=True, description="Console: local users may log in with their password; false = OIDC login only.")

    # Batch backlogs.
    backlog_chunk_rows: int = Field(default=500, description="Rows per database transaction and per enqueue batch.")
    backlog_enqueue_per_second: float = Field(default=200.0, description="Rate limit for putting backlog tickets on the queue; 0 = no limit.")

    # Memory and knowledge base (issue 5).
    memory_backend: Literal["lance", "weaviate", "off"] = Field(
        default="lance",
        description="lance: embedded LanceDB files under home/memory; weaviate: the server at weaviate_url; off: no memory and no knowledge base.",
    )
    memory_dir: Path | None = Field(default=None, description="LanceDB directory; empty = home/memory.")
    weaviate_url: str = Field(
        default="", description="Weaviate REST endpoint, e.g. http://weaviate:8080; its gRPC port is weaviate_grpc_port on the same host."
    )
    weaviate_grpc_port: int = 50051
    weaviate_api_key: SecretStr = SecretStr("")
    weaviate_collection_prefix: str = Field(default="Crewdesk", description="Collections are named <prefix>Kb_<embedding> and <prefix>Interaction_<embedding>.")
    embedding_provider: Literal["local", "openai"] = Field(
        default="local", description="local: all-MiniLM-L6-v2 in-process, offline, 1 torch thread; openai: any OpenAI-compatible /embeddings endpoint."
    )
    embedding_model: str = Field(default="", description="openai provider: model name; empty = text-embedding-3-small.")
    embedding_base_url: str = Field(default="", description="openai provider: endpoint; empty = openai_base_url.")
    embedding_api_key: SecretStr = Field(default=SecretStr(""), description="openai provider: key; empty = openai_api_key.")
    embedding_dimensions: int = Field(default=0, description="openai provider: vector size (text-embedding-3-* can shorten); 0 = the model's own.")
    kb_hybrid_alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Hybrid search weight: 1 = vectors only, 0 = keywords (BM25) only.")
    kb_chunk_chars: int = Field(default=1200, description="Knowledge-base chunk size cap, characters.")
    kb_chunk_overlap: int = Field(default=150, description="Characters of the previous chunk repeated at the start of the next.")
    kb_search_k: int = Field(default=4, description="Passages kb_search returns to an agent.")
    memory_recall_k: int = Field(default=3, description="Earlier-ticket summaries of the same customer put into the crew's context; 0 = none.")
    memory_retention_days: int = Field(default=365, description="Customer summaries older than this are erased by `crewdesk memory purge`; 0 = keep forever.")
    memory_purge_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="Hours between retention purges that `crewdesk worker` schedules (Celery beat) while memory is on; 0 = none (run `crewdesk memory purge` by cron).",
    )
    memory_key_secret: SecretStr = Field(
        default=SecretStr(""), description="HMAC key for customer keys (a hash of the normalised customer id); empty = plain SHA-256."
    )

    agents_dir: Path = Field(default_factory=lambda: project_path("agents"))
    tasks_dir: Path = Field(default_factory=lambda: project_path("tasks"))

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        from limits import parse

        for part in (p.strip() for p in value.split(";")):
            try:
                if part:
                    parse(part)
            except ValueError as exc:
                raise ValueError(f"api_rate_limit {part!r} is not a rate limit such as 60/minute: {exc}") from None
        return value

    @field_validator("console_secret_key")
    @classmethod
    def _long_console_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 32:
            raise ValueError("console_secret_key must have at least 32 characters (e.g. openssl rand -hex 32)")
        return value

    @field_validator("llm_fallback")
    @classmethod
    def _known_fallback_providers(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            name = item.partition("@")[0].partition(":")[0].strip().lower()
            if item and name not in LLMProvider.__members__:
                raise ValueError(
                    f"llm_fallback entry {item!r}: unknown provider {name!r}; expected provider[:model][@base_url] with provider one of "
                    + ", ".join(p.value for p in LLMProvider)
                )
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}s) must exceed task_time_limit ({self.task_time_limit}s), "
                "or the broker hands a running ticket to a second worker"
            )
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'crewdesk.db'}"
        if self.database_password.get_secret_value():
            self.database_url = with_password(self.database_url, self.database_password.get_secret_value())
        if self.broker_password.get_secret_value():
            self.broker_url = with_password(self.broker_url, self.broker_password.get_secret_value())
        if self.console_oidc_issuer:
            self._check_console_oidc()
        elif not self.console_password_login:
            raise ValueError("console_password_login is false and no console_oidc_issuer is set: nobody could log in to the console")
        return self

    def _check_console_oidc(self) -> None:
        """Console OIDC login needs a client id, a role map of known roles and an https issuer (http only on loopback)."""
        parts = urlsplit(self.console_oidc_issuer)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")):
            raise ValueError(f"console_oidc_issuer {self.console_oidc_issuer!r} must be an https URL (http only on loopback)")
        if not self.console_oidc_client_id:
            raise ValueError("console_oidc_issuer is set: console_oidc_client_id is needed too")
        if not self.console_oidc_roles:
            raise ValueError('console_oidc_issuer is set: console_oidc_roles must map claim values to roles, e.g. {"support":"agent"}')
        wrong = sorted(role for role in self.console_oidc_roles.values() if role not in ("agent", "lead", "admin"))
        if wrong:
            raise ValueError(f"console_oidc_roles maps to unknown roles {wrong}: use agent, lead or admin")

    @property
    def routing_cache(self) -> Path:
        """Where the routing and risk exemplars' vectors are cached."""
        return (self.cache_dir or self.home / "cache") / "routing"

    @property
    def crewai_storage_dir(self) -> Path:
        return self.home / "crewai"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


# Settings slices: what each domain reads, as a Protocol. A domain function takes its slice, not the whole Settings, so
# its signature says which knobs it depends on and mypy holds it to them; Settings satisfies every slice (the same
# names), and a test or an embedder may pass any object with those attributes.


class MailSettings(Protocol):
    """E-mail intake (IMAP) and replies (SMTP)."""

    home: Path  # attachments are stored under home/attachments
    imap_host: str
    imap_port: int
    imap_tls: Literal["ssl", "starttls", "none"]
    imap_user: str
    imap_password: SecretStr
    imap_folder: str
    imap_processed_folder: str
    imap_idle: bool
    imap_poll_seconds: int
    smtp_host: str
    smtp_port: int
    smtp_tls: Literal["ssl", "starttls", "none"]
    smtp_user: str
    smtp_password: SecretStr
    mail_ca_file: str
    support_address: str
    email_authserv_id: str
    attachment_max_bytes: int
    attachment_types: list[str]


class JiraSettings(Protocol):
    """Jira Service Management: webhooks in, comments and transitions out."""

    jira_base_url: str
    jira_user: str
    jira_api_token: SecretStr
    jira_webhook_secret: SecretStr
    jira_refusals_per_minute: int
    jira_status_on_resolved: str
    jira_status_on_escalated: str
    jira_status_on_waiting: str
    jira_bot_account_id: str
    jira_webhook_max_age_seconds: int


class ReplySettings(MailSettings, JiraSettings, Protocol):
    """The reply channels: SMTP and Jira."""


class MemorySettings(Protocol):
    """Memory and the knowledge base: the backend, embeddings, recall and retention."""

    home: Path
    memory_backend: Literal["lance", "weaviate", "off"]
    memory_dir: Path | None
    weaviate_url: str
    weaviate_grpc_port: int
    weaviate_api_key: SecretStr
    weaviate_collection_prefix: str
    embedding_provider: Literal["local", "openai"]
    embedding_model: str
    embedding_base_url: str
    embedding_api_key: SecretStr
    embedding_dimensions: int
    openai_base_url: str  # the embeddings' endpoint and key when theirs are empty
    openai_api_key: SecretStr
    llm_timeout: float
    kb_hybrid_alpha: float
    kb_chunk_chars: int
    kb_chunk_overlap: int
    kb_search_k: int
    memory_recall_k: int
    memory_retention_days: int
    memory_key_secret: SecretStr


class ModelSettings(Protocol):
    """The models: provider and tiers, the fallback chain and its breakers, the local llama.cpp server."""

    home: Path
    broker_url: str  # the breakers share their state on the broker's Redis
    llm_provider: LLMProvider
    llm_model_cheap: str
    llm_model_strong: str
    llm_timeout: float
    llm_max_tokens: int
    llm_temperature: float
    openai_base_url: str
    openai_api_key: SecretStr
    anthropic_api_key: SecretStr
    anthropic_base_url: str
    scripted_latency_ms: int
    llm_fallback: str
    llm_breaker_failures: int
    llm_breaker_reset_seconds: float
    llm_breaker_prefix: str
    local_model_path: Path | None
    local_host: str
    local_port: int
    local_ctx: int
    local_threads: int
    local_parallel: int
    local_server_bin: Path | None
    local_start_timeout: float

    @property
    def models_dir(self) -> Path: ...


class GateSettings(Protocol):
    """The governance gate: approvals, the per-ticket call limit, PII redaction."""

    approval_threshold_usd: float
    second_approval_above_usd: float
    max_tool_calls_per_ticket: int
    pii_redaction: bool
    identity_claimed_writes: list[str]


def load_settings(**overrides: object) -> Settings:
    """Read the environment now; callers pass the result down explicitly."""
    return Settings(**overrides)  # type: ignore[arg-type]


def quiet_crewai_env(settings: Settings) -> None:
    """Keep CrewAI offline and non-interactive: no telemetry, no tracing prompt."""
    import os

    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
    os.environ.setdefault("CREWAI_TESTING", "true")
    settings.crewai_storage_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CREWAI_STORAGE_DIR", str(settings.crewai_storage_dir))
