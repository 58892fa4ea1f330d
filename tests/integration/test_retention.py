"""Memory retention on a schedule: `crewdesk worker` runs Celery beat, which sends crewdesk.purge_memory every
CREWDESK_MEMORY_PURGE_HOURS, and the purge erases customer summaries older than CREWDESK_MEMORY_RETENTION_DAYS
from the embedded LanceDB store (real files, real MiniLM embeddings, a real worker and Redis broker)."""

from __future__ import annotations

import time

from crewdesk.memory.embeddings import local_embedder
from crewdesk.memory.lance import LanceBackend
from crewdesk.memory.service import customer_key
from crewdesk.settings import Settings
from tests.integration.test_memory_contract import interaction
from workers.app import beat_schedule, configure


def _store(home) -> LanceBackend:
    return LanceBackend(path=home / "memory", embedder=local_embedder())


def _remembered(store: LanceBackend) -> list[int]:
    return sorted(h.interaction.ticket_id for h in store.recall(customer_key(customer="ana@example.com"), "refund", k=10))


def test_beat_schedules_the_purge_only_when_there_is_memory_to_purge(tmp_path):
    def schedule(**fields):  # the reconciler runs on every beat; what is asserted here is the rest
        return beat_schedule(Settings(home=tmp_path, reconcile_seconds=0, conversation_sweep_seconds=0, **fields))

    on = schedule(memory_backend="lance", memory_purge_hours=6)
    assert on == {"purge-memory": {"task": "crewdesk.purge_memory", "schedule": 21600.0, "options": {"expires": 21600.0}}}
    assert schedule(memory_backend="off") == {}
    assert schedule(memory_retention_days=0) == {}  # keep forever: nothing to do
    assert schedule(memory_purge_hours=0) == {}  # purged by cron instead
    both = schedule(imap_host="127.0.0.1", imap_poll_seconds=30)
    assert set(both) == {"poll-mailbox", "purge-memory"} and both["poll-mailbox"]["schedule"] == 30.0
    default = beat_schedule(Settings(home=tmp_path, memory_backend="off"))
    assert default == {
        "reconcile": {"task": "crewdesk.reconcile", "schedule": 60.0, "options": {"expires": 60.0}},
        "conversations": {"task": "crewdesk.remind_waiting", "schedule": 900.0, "options": {"expires": 900.0}},
    }
    assert "conversations" not in beat_schedule(
        Settings(home=tmp_path, memory_backend="off", conversation_remind_after_hours=0, conversation_close_after_hours=0)
    )


def test_the_purge_task_erases_only_what_is_past_retention(tmp_path):
    store = _store(tmp_path)
    store.remember(interaction("ana@example.com", 1, "old: refund for a kettle", days_ago=40))
    store.remember(interaction("ana@example.com", 2, "recent: refund for a toaster", days_ago=2))
    from workers.tasks import purge_memory

    configure(Settings(home=tmp_path, memory_retention_days=30))
    result = purge_memory.apply().get()

    assert result == {"status": "done", "erased": {"lance": 1}}
    assert _remembered(_store(tmp_path)) == [2]
    assert purge_memory.apply().get() == {"status": "done", "erased": {"lance": 0}}  # run again: nothing twice


def test_a_worker_purges_on_its_own_schedule(start_worker, worker_env, tmp_path):
    home = tmp_path / "home"
    store = _store(home)
    store.remember(interaction("ana@example.com", 1, "old: refund for a kettle", days_ago=40))
    store.remember(interaction("ana@example.com", 2, "recent: refund for a toaster", days_ago=2))
    worker = start_worker(CREWDESK_MEMORY_RETENTION_DAYS="30", CREWDESK_MEMORY_PURGE_HOURS="0.0005")  # every 1.8 s

    deadline = time.monotonic() + 90
    while _remembered(_store(home)) != [2] and time.monotonic() < deadline:
        time.sleep(1)

    assert _remembered(_store(home)) == [2], worker.log.read_text()[-3000:]
    log = worker.log.read_text()
    assert "Sending due task purge-memory (crewdesk.purge_memory)" in log  # beat sent it; the worker ran it:
    assert "{'status': 'done', 'erased': {'lance': 1}}" in log
