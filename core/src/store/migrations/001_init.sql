-- ward store, version 1: sessions, their events, requests from other
-- operators and the sessions' answers. Append-only for everyone: the
-- grants give operators INSERT and SELECT only, and triggers refuse
-- UPDATE, DELETE and TRUNCATE to every role, the owner included.
-- Who wrote a row is always the role PostgreSQL authenticated
-- (session_user), set by a trigger whatever the client sends.

CREATE SCHEMA IF NOT EXISTS ward;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ward_operator') THEN
    CREATE ROLE ward_operator NOLOGIN;
  END IF;
END
$$;

CREATE TABLE ward.sessions (
  session_id   text PRIMARY KEY CHECK (session_id ~ '^[A-Za-z0-9._-]{1,128}$'),
  owner        name NOT NULL,
  host         text NOT NULL,
  runbook      text NOT NULL,
  target       text NOT NULL,
  environment  text NOT NULL,
  started_at   timestamptz NOT NULL,
  stored_at    timestamptz NOT NULL
);

CREATE TABLE ward.events (
  session_id  text NOT NULL REFERENCES ward.sessions,
  seq         bigint NOT NULL CHECK (seq >= 0),
  kind        text NOT NULL,
  ts          text NOT NULL,
  prev        text NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
  hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  -- The event's line exactly as in the local log (canonical JSON).
  line        text NOT NULL,
  stored_by   name NOT NULL,
  stored_at   timestamptz NOT NULL,
  PRIMARY KEY (session_id, seq),
  UNIQUE (session_id, hash)
);

CREATE TABLE ward.requests (
  id           bigserial PRIMARY KEY,
  session_id   text NOT NULL REFERENCES ward.sessions,
  op           text NOT NULL CHECK (op IN ('approve', 'approve_for_session', 'reject', 'answer', 'revoke')),
  -- A proposal id (or unique prefix) for approve/reject, a fingerprint for
  -- revoke, empty for answer.
  subject      text NOT NULL DEFAULT '',
  reason       text NOT NULL,
  operator     name NOT NULL,
  -- Every role the operator was a member of when the request was made.
  roles        text[] NOT NULL,
  requested_at timestamptz NOT NULL
);

CREATE TABLE ward.answers (
  request_id   bigint PRIMARY KEY REFERENCES ward.requests,
  answer       jsonb NOT NULL,
  answered_by  name NOT NULL,
  answered_at  timestamptz NOT NULL
);

CREATE INDEX requests_by_session ON ward.requests (session_id, id);

CREATE FUNCTION ward.refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'ward store: % is append-only; % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION ward.session_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  NEW.owner := session_user;
  NEW.stored_at := clock_timestamp();
  RETURN NEW;
END
$$;

-- An event is stored only by the session's owner, only in chain order:
-- its prev is the hash of the event before it (the genesis for seq 0).
CREATE FUNCTION ward.event_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  owner_ name;
  before_ text;
BEGIN
  SELECT s.owner INTO owner_ FROM ward.sessions s WHERE s.session_id = NEW.session_id;
  IF owner_ IS DISTINCT FROM session_user THEN
    RAISE EXCEPTION 'ward store: session % belongs to %, not %', NEW.session_id, owner_, session_user
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.seq = 0 THEN
    before_ := repeat('0', 64);
  ELSE
    SELECT e.hash INTO before_ FROM ward.events e
     WHERE e.session_id = NEW.session_id AND e.seq = NEW.seq - 1;
  END IF;
  IF before_ IS DISTINCT FROM NEW.prev THEN
    RAISE EXCEPTION 'ward store: event % of session % does not follow the stored chain', NEW.seq, NEW.session_id
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.stored_by := session_user;
  NEW.stored_at := clock_timestamp();
  PERFORM pg_notify('ward_events', NEW.session_id);
  RETURN NEW;
END
$$;

CREATE FUNCTION ward.request_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  NEW.operator := session_user;
  NEW.roles := ARRAY(
    SELECT r.rolname::text FROM pg_roles r
     WHERE pg_has_role(session_user, r.oid, 'MEMBER')
     ORDER BY 1);
  NEW.requested_at := clock_timestamp();
  PERFORM pg_notify('ward_requests', NEW.session_id);
  RETURN NEW;
END
$$;

-- Only the session that was asked answers, once.
CREATE FUNCTION ward.answer_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  owner_ name;
BEGIN
  SELECT s.owner INTO owner_ FROM ward.requests q JOIN ward.sessions s USING (session_id)
   WHERE q.id = NEW.request_id;
  IF owner_ IS DISTINCT FROM session_user THEN
    RAISE EXCEPTION 'ward store: only the session''s owner (%) answers its requests', owner_
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  NEW.answered_by := session_user;
  NEW.answered_at := clock_timestamp();
  PERFORM pg_notify('ward_answers', NEW.request_id::text);
  RETURN NEW;
END
$$;

CREATE TRIGGER stamp BEFORE INSERT ON ward.sessions FOR EACH ROW EXECUTE FUNCTION ward.session_stamp();
CREATE TRIGGER stamp BEFORE INSERT ON ward.events FOR EACH ROW EXECUTE FUNCTION ward.event_stamp();
CREATE TRIGGER stamp BEFORE INSERT ON ward.requests FOR EACH ROW EXECUTE FUNCTION ward.request_stamp();
CREATE TRIGGER stamp BEFORE INSERT ON ward.answers FOR EACH ROW EXECUTE FUNCTION ward.answer_stamp();

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ward.sessions FOR EACH ROW EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ward.events FOR EACH ROW EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ward.requests FOR EACH ROW EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ward.answers FOR EACH ROW EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ward.sessions FOR EACH STATEMENT EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ward.events FOR EACH STATEMENT EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ward.requests FOR EACH STATEMENT EXECUTE FUNCTION ward.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ward.answers FOR EACH STATEMENT EXECUTE FUNCTION ward.refuse_change();

REVOKE ALL ON SCHEMA ward FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ward FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ward FROM PUBLIC;
GRANT USAGE ON SCHEMA ward TO ward_operator;
GRANT SELECT, INSERT ON ward.sessions, ward.events, ward.requests, ward.answers TO ward_operator;
GRANT USAGE ON SEQUENCE ward.requests_id_seq TO ward_operator;
