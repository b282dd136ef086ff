package pgstore

// schemaVersion is the layout this build creates and reads. A database
// with another version is refused, rather than misread.
const schemaVersion = 1

// migrationLock is the advisory lock key that makes processes opening one
// empty database at once create its schema once ("cust" in ASCII).
const migrationLock = 0x63757374

// schemaV1 is the whole layout, created in one transaction. Its tables are
// prefixed cust_ so that it can share a database with the scheduler's.
//
// Media and device IDs are uuid; unsigned 64-bit numbers (list versions,
// ledger sequence numbers) are bigint holding the same bits. Searchable
// text is kept folded by Go (customers.FoldText), so that both backends
// fold alike whatever the database's collation, and sorts use COLLATE "C"
// (byte order, as Go compares strings).
//
// The ledger refuses UPDATE, DELETE and TRUNCATE with a trigger: entries
// are only ever appended, whoever connects.
const schemaV1 = `
CREATE TABLE cust_accounts (
	id            text PRIMARY KEY,
	email         text NOT NULL UNIQUE,
	name          text NOT NULL,
	street        text NOT NULL,
	city          text NOT NULL,
	postcode      text NOT NULL,
	region        text NOT NULL,
	password_hash text NOT NULL,
	payment_token text NOT NULL,
	status        text NOT NULL,
	status_reason text NOT NULL,
	catalogs      text[] NOT NULL,
	created       timestamptz NOT NULL,
	updated       timestamptz NOT NULL
);

CREATE TABLE cust_sessions (
	hash    bytea PRIMARY KEY CHECK (length(hash) = 32),
	account text NOT NULL,
	csrf    text NOT NULL,
	addr    text NOT NULL,
	created timestamptz NOT NULL,
	expires timestamptz NOT NULL
);
CREATE INDEX cust_sessions_account ON cust_sessions (account);
CREATE INDEX cust_sessions_expires ON cust_sessions (expires);

CREATE TABLE cust_throttles (
	key      text PRIMARY KEY,
	failures bigint NOT NULL,
	last     timestamptz NOT NULL,
	until    timestamptz NOT NULL
);
CREATE INDEX cust_throttles_last ON cust_throttles (last);

CREATE TABLE cust_boxes (
	ref       text PRIMARY KEY,
	account   text NOT NULL,
	code      text NOT NULL UNIQUE,
	device    uuid UNIQUE, -- NULL until the box activates
	supplier  text NOT NULL,
	region    text NOT NULL,
	added     timestamptz NOT NULL,
	activated timestamptz NOT NULL
);
CREATE INDEX cust_boxes_account ON cust_boxes (account, added, ref);

CREATE TABLE cust_catalogs (
	id     text PRIMARY KEY,
	vendor text NOT NULL,
	name   text NOT NULL
);

CREATE TABLE cust_titles (
	media         uuid PRIMARY KEY,
	catalog       text NOT NULL,
	name          text NOT NULL,
	year          bigint NOT NULL,
	genre         text NOT NULL,
	actors        text[] NOT NULL,
	directors     text[] NOT NULL,
	producers     text[] NOT NULL,
	language      text NOT NULL,
	rating        text NOT NULL,
	rent_amount   bigint NOT NULL,
	rent_currency text NOT NULL,
	buy_amount    bigint NOT NULL,
	buy_currency  text NOT NULL,
	window_ns     bigint NOT NULL,
	regions       text[] NOT NULL,
	publish_at    timestamptz NOT NULL,
	-- Folded by Go: what search matches, filters and sorts on.
	search_key    text NOT NULL,
	genre_key     text NOT NULL,
	name_key      text NOT NULL
);
CREATE INDEX cust_titles_catalog ON cust_titles (catalog, publish_at);

CREATE TABLE cust_lists (
	box     text PRIMARY KEY,
	titles  bytea NOT NULL CHECK (length(titles) % 16 = 0), -- media IDs end to end
	version bigint NOT NULL,
	updated timestamptz NOT NULL
);

CREATE TABLE cust_purchases (
	id             text PRIMARY KEY,
	account        text NOT NULL,
	box            text NOT NULL,
	title          uuid NOT NULL,
	kind           text NOT NULL,
	price_amount   bigint NOT NULL,
	price_currency text NOT NULL,
	at             timestamptz NOT NULL,
	expires        timestamptz NOT NULL,
	voided         boolean NOT NULL,
	charge_ref     text NOT NULL
);
CREATE INDEX cust_purchases_account ON cust_purchases (account, at, id);
CREATE INDEX cust_purchases_box ON cust_purchases (box, title, at, id);

CREATE TABLE cust_ledger (
	account  text NOT NULL,
	seq      bigint NOT NULL,
	at       timestamptz NOT NULL,
	kind     text NOT NULL,
	amount   bigint NOT NULL,
	currency text NOT NULL,
	purchase text NOT NULL,
	box      text NOT NULL,
	title    uuid NOT NULL,
	memo     text NOT NULL,
	prev     bytea NOT NULL CHECK (length(prev) = 32),
	hash     bytea NOT NULL CHECK (length(hash) = 32),
	PRIMARY KEY (account, seq)
);

CREATE FUNCTION cust_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	RAISE EXCEPTION 'the billing ledger is append-only: % refused', TG_OP;
END
$fn$;
CREATE TRIGGER cust_ledger_no_update BEFORE UPDATE OR DELETE ON cust_ledger
	FOR EACH ROW EXECUTE FUNCTION cust_ledger_append_only();
CREATE TRIGGER cust_ledger_no_truncate BEFORE TRUNCATE ON cust_ledger
	FOR EACH STATEMENT EXECUTE FUNCTION cust_ledger_append_only();
`
