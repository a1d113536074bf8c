-- douyin_club schema, version 1. Applied at start-up when PRAGMA user_version is below 1.
-- A later change appends a new numbered migration in actors/src/store/migrate.rs; this file
-- stays the description of version 1.

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    user_name  TEXT    NOT NULL UNIQUE,
    pwd_hash   TEXT    NOT NULL,            -- argon2id PHC string, never the password
    created_at INTEGER NOT NULL             -- unix milliseconds
);

-- A session id is stored only as its SHA-256: a copy of the database cannot sign anybody in.
CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL             -- unix milliseconds; slides forward on use
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- seq orders lists newest first and is what cursors carry; id is the public UUID.
CREATE TABLE videos (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    author_id    INTEGER NOT NULL REFERENCES users(id),
    name         TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'ready', 'deleted')),
    size         INTEGER,
    content_type TEXT,
    sha256       TEXT,
    created_at   INTEGER NOT NULL,
    uploaded_at  INTEGER,
    CHECK ((state = 'pending') = (sha256 IS NULL) OR state = 'deleted')
);
CREATE INDEX videos_feed ON videos(state, seq);
CREATE INDEX videos_author ON videos(author_id, seq);

CREATE TABLE comments (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    video_seq  INTEGER NOT NULL REFERENCES videos(seq),
    author_id  INTEGER NOT NULL REFERENCES users(id),
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX comments_video ON comments(video_seq, seq);

-- The durable deletion queue: a row here means "remove this video's file, comments and row".
-- It is written in the same transaction that marks the video deleted.
CREATE TABLE video_del_rec (
    video_id        TEXT    PRIMARY KEY,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    failed          INTEGER NOT NULL DEFAULT 0,
    queued_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX video_del_rec_due ON video_del_rec(failed, next_attempt_at);
