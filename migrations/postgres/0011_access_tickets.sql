-- Tickets waiting to be redeemed, where instances share the database: a ticket asked of one
-- instance opens a socket on any. The SHA-256 of each ticket, never the ticket.
CREATE TABLE access_tickets (
    ticket_sha256 BYTEA PRIMARY KEY,
    name TEXT NOT NULL,
    caller_key TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX access_tickets_by_expiry ON access_tickets (expires_at_ms);
