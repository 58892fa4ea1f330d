"""Live counts on the queues (issue 22): /queues/counts is the queues' tabs with their counts under the page's filters,
the fragment htmx fetches every 10 seconds to replace them (templates/queue_tabs.html). Without JavaScript the queues
page shows the counts of its load and works the same.

The fragment needs a login as every page does; without one it answers 204 with HX-Redirect to the login page, so that
htmx sends the whole page there instead of swapping a login form into the tabs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from crewdesk.console.app import ConsoleServices, page
from crewdesk.console.security import LoginRequired, current_user
from crewdesk.tickets import queues as ticket_queues

router = APIRouter(include_in_schema=False)


@router.get("/queues/counts")
def counts(
    request: Request,
    queue: str = "escalated",
    source: str = "",
    category: str = "",
    priority: str = "",
    language: str = "",
    q: str = "",
    older: Annotated[int, Query(ge=0, le=24 * 365)] = 0,
) -> Response:
    try:
        user = current_user(request)
    except LoginRequired:
        return Response(status_code=204, headers={"HX-Redirect": f"{request.scope.get('root_path', '')}/login"})
    queue, narrow = ticket_queues.asked(queue=queue, source=source, category=category, priority=priority, language=language, q=q, older=older)
    services: ConsoleServices = request.app.state.console
    with services.session_factory() as db:
        listed = ticket_queues.queues(db=db, shown="", narrow=narrow)  # counts only: no queue's tickets are read
    return page(request, "queue_tabs.html", {"user": user, "queues": listed, "queue": queue, "narrow": narrow, "oob": True})
