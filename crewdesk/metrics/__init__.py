"""Prometheus metrics and support KPIs (a domain: it imports no channel, tool, crew, worker or face).

Two sources, two endpoints:

* ``collector.DatabaseCollector`` is evaluated at scrape time by the HTTP API's ``GET /metrics``. What lives in
  PostgreSQL (and Redis) is read there with read-only, bounded queries, so it is right after any restart:

  ====================================================  ======  ===============================================
  crewdesk_tickets{status,channel,category}             gauge   tickets now in each status (channel = source, or
                                                                "other" outside TicketSource: labels.py)
  crewdesk_approvals_waiting                            gauge   approvals still pending
  crewdesk_approvals_oldest_waiting_seconds             gauge   age of the oldest pending approval (0 if none)
  crewdesk_tool_calls_total{tool,outcome}               counter audit rows of tool calls: outcome ok | error
                                                                (kind tool_call), effect (a write done, kind
                                                                effect), denied | replayed | approval_requested
                                                                (kind gate, from the name's prefix)
  crewdesk_gate_refusals_total{tool}                    counter gate rows named ``denied:<tool>``
  crewdesk_queue_depth{queue}                           gauge   Redis LLEN of each Celery queue
  crewdesk_llm_breaker_open{provider}                   gauge   1 open, 0.5 half-open, 0 closed (see below)
  crewdesk_metrics_source_up{source}                    gauge   1 when database / broker / breaker answered
  ====================================================  ======  ===============================================

  The audit counts are incremental: ``audit_events`` is append-only, so rows up to a settled id are kept as totals
  and each scrape counts only the ids above it (a primary-key range). The settled id trails the newest id by
  ``task_time_limit`` + 5 minutes, because ids are not committed in id order (each ticket's chain has its own lock);
  see ``collector.AuditTally``. Only ``id``, ``ticket_id``, ``run_id``, ``kind``, ``name``, ``error`` and
  ``created_at`` of the audit table are used.

* ``worker.WorkerMetrics`` are event counters written by the Celery worker children in prometheus_client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, default ``CREWDESK_HOME/prometheus``, wiped when
  ``crewdesk worker`` starts) and served aggregated by ``crewdesk worker --metrics-port N`` from the parent. They
  are derived from the ``crew_runs`` rows a task finished (``workers/metrics.py`` hooks Celery's task signals):

  ====================================================  =========  ============================================
  crewdesk_runs_total{outcome}                          counter    finished crew runs by outcome
  crewdesk_llm_calls_total                              counter    model calls
  crewdesk_llm_seconds_total                            counter    model seconds (crew_runs.llm_seconds)
  crewdesk_llm_tokens_total{kind}                       counter    prompt | cached (part of prompt) | completion
  crewdesk_llm_cost_usd_total                           counter    estimated cost, USD
  crewdesk_run_seconds                                  histogram  crew run latency (crew_runs.latency_s)
  crewdesk_ticket_first_reply_seconds{channel}          histogram  ticket created -> its first outbound reply
  crewdesk_ticket_handle_seconds{channel,status}        histogram  ticket created -> the run that ended it
  crewdesk_worker_tickets_in_progress                   gauge      tickets being processed now (live children)
  ====================================================  =========  ============================================

Circuit-breaker contract (``crewdesk.llm`` owns the breaker; this package only reads it, at scrape time): if a
module ``crewdesk.llm.breaker`` exists and has a function ``states(settings) -> dict[str, str]`` mapping a provider
name to ``"closed"``, ``"open"`` or ``"half-open"``, each entry becomes ``crewdesk_llm_breaker_open{provider}`` (the
label is the dict's key as given; crewdesk.llm.breaker keys endpoints as ``provider@base_url``; an unknown state counts
as open).
Without that module or function nothing is exported for it; an exception from ``states`` sets
``crewdesk_metrics_source_up{source="breaker"}`` to 0 and the rest of the scrape goes on.

``kpi`` computes the support KPIs (automated resolution, first-contact resolution, escalation, handle time, cost
per resolved ticket) by channel, category and day for ``crewdesk kpi``.
"""
