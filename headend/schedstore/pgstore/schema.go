package pgstore

// schemaVersion is the layout this build creates and reads. A database
// with a later version is refused, rather than misread.
const schemaVersion = 1

// migrationLock is the advisory lock key that makes processes opening one
// empty database at once create its schema once ("sched" in ASCII).
const migrationLock = 0x7363686564

// schemaV1 is the whole layout, created in one transaction.
//
// IDs (boxes, titles) are uuid: 16 bytes, fixed width, and readable in
// psql. Unsigned 64-bit numbers that are only stored (list versions,
// recorded sequence numbers, transfer IDs) are bigint holding the same
// bits; the outbox's Seq, which is compared, is limited to 1..2^63-1.
// Holdings and outbox are keyed box first, so a box's rows are one index
// range: DeleteBox and Outbox are range scans.
const schemaV1 = `
CREATE TABLE boxes (
	id          uuid PRIMARY KEY,
	account     text NOT NULL,
	cert_sha256 bytea NOT NULL CHECK (length(cert_sha256) = 32),
	server      boolean NOT NULL,
	cluster     text NOT NULL,
	capacity    bigint NOT NULL,
	free        bigint NOT NULL,
	up_kbps     bigint NOT NULL,
	down_kbps   bigint NOT NULL,
	nat         text NOT NULL,
	region      text NOT NULL,
	isp         text NOT NULL,
	piece_addr  text NOT NULL,
	activated   timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL
);

CREATE TABLE holdings (
	box      uuid NOT NULL,
	title    uuid NOT NULL,
	complete boolean NOT NULL,
	have     bytea NOT NULL, -- bit 7 of byte 0 is piece 0
	PRIMARY KEY (box, title)
);

CREATE TABLE priority_lists (
	box     uuid PRIMARY KEY,
	titles  bytea NOT NULL CHECK (length(titles) % 16 = 0), -- title IDs end to end
	version bigint NOT NULL
);

CREATE TABLE titles (
	id           uuid PRIMARY KEY,
	pieces       bigint NOT NULL,
	piece_size   bigint NOT NULL,
	payload_size bigint NOT NULL,
	payload_hash bytea NOT NULL CHECK (length(payload_hash) = 32),
	publish_at   timestamptz NOT NULL
);

CREATE TABLE transfers (
	id        bigint PRIMARY KEY,
	title     uuid NOT NULL,
	receiver  uuid NOT NULL,
	sender    uuid NOT NULL,
	portions  bigint[] NOT NULL, -- first, last, first, last, ...
	initiator uuid NOT NULL,
	state     text NOT NULL CHECK (state IN ('requested', 'running', 'done', 'failed')),
	outcome   text NOT NULL,
	pieces    bigint NOT NULL,
	created   timestamptz NOT NULL,
	updated   timestamptz NOT NULL
);
-- LoadTransfers reads only these, however many transfers have ended.
CREATE INDEX transfers_open ON transfers (id) WHERE state IN ('requested', 'running');
-- TransfersOf: a box's newest first, from either side.
CREATE INDEX transfers_receiver ON transfers (receiver, created DESC, id DESC);
CREATE INDEX transfers_sender ON transfers (sender, created DESC, id DESC);
CREATE SEQUENCE transfer_ids AS bigint;

CREATE TABLE measurements (
	from_box  uuid NOT NULL,
	to_box    uuid NOT NULL,
	kbps      bigint NOT NULL,
	rtt_milli bigint NOT NULL,
	at        timestamptz NOT NULL,
	PRIMARY KEY (from_box, to_box)
);

CREATE TABLE outbox (
	box   uuid NOT NULL,
	seq   bigint NOT NULL CHECK (seq > 0),
	frame bytea NOT NULL,
	PRIMARY KEY (box, seq)
);

-- A box's recorded sequence numbers, and the highest Seq ever appended to
-- its outbox, which outlives the messages acknowledged.
CREATE TABLE seqs (
	box      uuid PRIMARY KEY,
	seq_in   bigint NOT NULL DEFAULT 0,
	seq_out  bigint NOT NULL DEFAULT 0,
	appended bigint NOT NULL DEFAULT 0
);

CREATE TABLE activation_codes (
	code    text PRIMARY KEY,
	account text NOT NULL,
	added   timestamptz NOT NULL DEFAULT now(),
	used    timestamptz -- NULL until used
);
`
