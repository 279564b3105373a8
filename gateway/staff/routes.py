"""The staff API's route table: every endpoint, its action, fields and handler, in one list.

The router, the authorization matrix test and the OpenAPI document all read this table.
"""

from __future__ import annotations

from gateway.staff import admin, handoffs, offline, tickets_read, tickets_write, webhooks_out
from gateway.staff.errors import MAX_UPLOAD_BODY, Field
from gateway.staff.routing import RouteSpec
from gateway.staff.tickets_write import ASSIGN_BODY, NOTE, REASON, TEXT

T = "/tickets/{ticket_id}"
H = "/handoffs/{address}"  # the citizen's address, URL-encoded
PAGE = tuple(f for f in tickets_read.LIST_QUERY if f.name not in ("unit",))

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/tickets", "listTickets", "tickets.list", tickets_read.list_tickets,
              "List tickets, newest first, with filters and cursor paging", query=tickets_read.LIST_QUERY),
    RouteSpec("POST", "/tickets", "createTicket", "tickets.create", offline.create_on_behalf,
              "Create a ticket on a citizen's behalf (grid worker, phone call)", body=offline.CREATE_BODY,
              ok_status=201, max_body=MAX_UPLOAD_BODY, atomic=True),
    RouteSpec("GET", T, "getTicket", "tickets.read", tickets_read.ticket_detail,
              "A ticket with its full timeline", object_level=True),
    RouteSpec("POST", T + "/accept", "acceptTicket", "tickets.accept", tickets_write.accept,
              "Accept a new ticket (受理)", body=(), object_level=True, atomic=True),
    RouteSpec("POST", T + "/reject", "rejectTicket", "tickets.reject", tickets_write.reject,
              "Reject with a reason the citizen is told", body=(REASON,), object_level=True, atomic=True),
    RouteSpec("POST", T + "/assign", "assignTicket", "tickets.assign", tickets_write.assign,
              "Assign or transfer to a unit (交办), with a note and due date", body=ASSIGN_BODY,
              object_level=True, atomic=True),
    RouteSpec("POST", T + "/notes", "addNote", "tickets.note", tickets_write.note,
              "Add an internal note (not sent to the citizen)", body=(TEXT,), ok_status=201, object_level=True, atomic=True),
    RouteSpec("POST", T + "/reply", "replyToCitizen", "tickets.reply", tickets_write.reply,
              "Reply to the citizen over their channel (答复)", body=(TEXT,), object_level=True, atomic=True),
    RouteSpec("POST", T + "/request-info", "requestInfo", "tickets.request_info", tickets_write.request_info,
              "Ask the citizen for more information; the answer is filed as a supplement",
              body=(Field("question", required=True, min_length=1, max_length=1000),), object_level=True, atomic=True),
    RouteSpec("POST", T + "/resolve", "resolveTicket", "tickets.resolve", tickets_write.resolve,
              "Resolve (办结) with the text the citizen receives; starts the survey",
              body=(Field("resolution", required=True, min_length=1, max_length=4000),), object_level=True, atomic=True),
    RouteSpec("POST", T + "/reopen", "reopenTicket", "tickets.reopen", tickets_write.reopen,
              "Reopen a resolved, closed or rejected ticket", body=(REASON,), object_level=True, atomic=True),
    RouteSpec("POST", T + "/merge", "mergeTicket", "tickets.merge", tickets_write.merge,
              "Merge this duplicate into another ticket; its citizen is told the surviving id",
              body=(Field("into", required=True, min_length=1, max_length=40), NOTE), object_level=True, atomic=True),
    RouteSpec("GET", T + "/attachments/{media_id}", "getAttachment", "tickets.attachment",
              tickets_read.attachment, "Download an attachment", binary=True, object_level=True),
    RouteSpec("GET", "/units", "listUnits", "units.list", admin.list_units, "List units", tags=("units",)),
    RouteSpec("POST", "/units", "createUnit", "units.manage", admin.create_unit, "Create a unit",
              body=admin.UNIT_CREATE, ok_status=201, tags=("units",)),
    RouteSpec("PATCH", "/units/{unit_id}", "renameUnit", "units.manage", admin.rename_unit, "Rename a unit",
              body=admin.UNIT_RENAME, tags=("units",)),
    RouteSpec("GET", "/units/{unit_id}/queue", "unitQueue", "units.queue", tickets_read.unit_queue,
              "A unit's open work: its assigned or replied tickets", query=PAGE, tags=("units",)),
    RouteSpec("GET", "/stats", "getStats", "stats.read", admin.stats,
              "Received (by channel), resolved or answered (tickets), in progress, by period and unit, satisfaction",
              query=admin.STATS_QUERY, tags=("stats",)),
    RouteSpec("GET", "/dead-letters", "listDeadLetters", "dead_letters.list", admin.dead_letters,
              "Outbound messages that failed for good", query=admin.LIST_LIMIT, tags=("outbox",)),
    RouteSpec("POST", "/dead-letters/{entry_id}/retry", "retryDeadLetter", "dead_letters.retry",
              admin.retry_dead_letter, "Queue a dead letter for sending again", body=(), tags=("outbox",)),
    RouteSpec("GET", "/callbacks", "listCallbacks", "callbacks.list", admin.callbacks,
              "Tickets closed without a rating, to call back (回访)", query=admin.LIST_LIMIT, tags=("survey",)),
    RouteSpec("POST", "/callbacks/{ticket_id}", "recordCallback", "callbacks.record", admin.record_callback,
              "Record a call-back's outcome as the rating", body=admin.CALLBACK_BODY, object_level=True,
              tags=("survey",), atomic=True),
    RouteSpec("GET", "/supervision", "listSupervision", "supervision.list", admin.supervision,
              "Tickets flagged for supervision after repeated re-dispatch", query=admin.LIST_LIMIT,
              tags=("survey",)),
    RouteSpec("GET", "/webhooks", "listWebhooks", "webhooks.manage", webhooks_out.list_webhooks,
              "Outbound webhook subscriptions", tags=("webhooks",)),
    RouteSpec("POST", "/webhooks", "createWebhook", "webhooks.manage", webhooks_out.create_webhook,
              "Subscribe a URL to every ticket event", body=webhooks_out.SUBSCRIBE_BODY, ok_status=201,
              tags=("webhooks",)),
    RouteSpec("DELETE", "/webhooks/{webhook_id}", "deleteWebhook", "webhooks.manage",
              webhooks_out.delete_webhook, "Delete a subscription", tags=("webhooks",)),
    RouteSpec("GET", "/handoffs", "listHandoffs", "handoffs.list", handoffs.list_handoffs,
              "Citizens waiting for a human (转人工), longest-waiting first, with what they said",
              query=handoffs.LIST_QUERY, tags=("handoffs",)),
    RouteSpec("POST", H + "/reply", "replyToHandoff", "handoffs.reply", handoffs.reply,
              "Answer a waiting citizen over their channel", body=handoffs.REPLY_BODY, tags=("handoffs",),
              atomic=True),
    RouteSpec("POST", H + "/close", "closeHandoff", "handoffs.close", handoffs.close,
              "End the hand-off: the citizen leaves the queue and the bot answers again", body=(),
              tags=("handoffs",), atomic=True),
)  # fmt: skip
