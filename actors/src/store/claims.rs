//! Who may run a job: scheduler incarnations, their heartbeats, and claims.
//!
//! Every start of a scheduler is a new [`Incarnation`] of a [`SchedulerNode`] (a stable
//! identity: host, listen address and data dir). A claim writes the claimer's incarnation into
//! the record (`claimed_by`) beside a lease (`next_attempt_at`), and every claim and
//! [`Heartbeat`] pushes the incarnation's `alive_until` forward. Then:
//!
//! - a live incarnation's claims are never taken by another, whatever the lease says: two
//!   live schedulers never run the same record;
//! - an incarnation is dead when `alive_until` has passed (no sign of life for a few timer
//!   periods) or when a newer incarnation of the same node has registered (its restart), and
//!   its claims are then free at once, not when their lease runs out;
//! - the lease only brings a record back to its own live claimer, when the outcome of a run
//!   could not be recorded.
//!
//! A node runs one scheduler at a time (its listen address cannot be bound twice on one host),
//! so a new incarnation of a node proves the earlier ones dead; incarnations over for a day
//! are forgotten. The same statements suit PostgreSQL with several schedulers on several
//! hosts: the due query takes `FOR UPDATE SKIP LOCKED` there, and `now` should then be the
//! database's clock rather than each host's.

use std::time::Duration;

use actix::prelude::*;
use time::OffsetDateTime;

use super::jobs::{RECORD_COLS, ms, record_row};
use super::{Db, VideoStore, to_ms};
use crate::error::StoreError;
use crate::model::{IncarnationId, JobKind, JobRecord};
use crate::params;

/// Incarnations over (ended, or silent) for this long are forgotten.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The stable identity of a scheduler across restarts; see [`Incarnation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchedulerNode(String);

impl SchedulerNode {
    /// The identity of a scheduler listening on `addr` of `host`, over the data dir `data`.
    pub fn new(host: &str, addr: std::net::SocketAddr, data: &std::path::Path) -> Self {
        SchedulerNode(format!("{host} {addr} {}", data.display()))
    }

    /// An identity no other run shares: its claims come back only once its heartbeat stops.
    pub fn unique() -> Self {
        SchedulerNode(format!("anonymous {}", IncarnationId::new()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One run of a scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incarnation {
    pub id: IncarnationId,
    pub node: SchedulerNode,
    pub started_at: OffsetDateTime,
    /// How long one sign of life (a heartbeat or a claim) keeps this incarnation alive.
    pub alive_for: Duration,
}

impl Incarnation {
    /// A new incarnation of `node`, starting now.
    pub fn start(node: SchedulerNode, alive_for: Duration) -> Self {
        Incarnation {
            id: IncarnationId::new(),
            node,
            started_at: OffsetDateTime::now_utc(),
            alive_for,
        }
    }
}

/// Whether an incarnation may still claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// A newer incarnation of the same node has registered: this one must not claim any more.
    Superseded,
}

/// A sign of life at `now`: keeps the incarnation's claims its own for another `alive_for`.
/// The first one (or the first claim) registers the incarnation and ends the earlier
/// incarnations of its node, freeing their claims.
#[derive(Debug, Message)]
#[rtype(result = "Result<Liveness, StoreError>")]
pub struct Heartbeat {
    pub incarnation: Incarnation,
    pub now: OffsetDateTime,
}

/// Claims for `claimer` up to `limit` jobs of `kind` due at `now`, oldest due first: jobs
/// nobody runs, jobs whose claimer is dead (freed first, in the same transaction), and the
/// claimer's own jobs whose `lease` ran out. A claim sets `claimed_by` and moves
/// `next_attempt_at` to `now + lease`. A superseded claimer gets nothing.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<JobRecord>, StoreError>")]
pub struct ClaimJobs {
    pub kind: JobKind,
    pub claimer: Incarnation,
    pub now: OffsetDateTime,
    pub limit: u32,
    pub lease: Duration,
}

/// Records a sign of life of `me` at `now`, registering it first if it is new.
fn touch(db: &mut Db<'_>, me: &Incarnation, now: OffsetDateTime) -> Result<Liveness, StoreError> {
    let (id, now) = (me.id.to_string(), to_ms(now));
    let until = now.saturating_add(ms(me.alive_for));
    if beat(db, &id, until)? {
        return Ok(Liveness::Alive);
    }
    if register(db, me, now, until)? {
        return Ok(Liveness::Alive);
    }
    // It exists: registered by a heartbeat or claim running beside this one (on PostgreSQL,
    // whose UPDATE above did not see that row yet), or ended by a newer incarnation.
    Ok(if beat(db, &id, until)? { Liveness::Alive } else { Liveness::Superseded })
}

/// Pushes a live incarnation's `alive_until` to `until`; `false` when `id` is not a live one.
fn beat(db: &mut Db<'_>, id: &str, until: i64) -> Result<bool, StoreError> {
    let n = db.execute(
        "UPDATE scheduler_incarnations
            SET alive_until = CASE WHEN alive_until > ?2 THEN alive_until ELSE ?2 END
          WHERE id = ?1 AND ended_at IS NULL",
        params![id, until],
    )?;
    Ok(n == 1)
}

/// Inserts `me` and ends every other incarnation of its node: the newest registration wins,
/// in the database's order rather than by anybody's clock, so a restart after the clock was
/// set back still takes over. `false` when `me` was registered already (its row exists, or
/// a transaction beside this one inserted it first: the insert waits for that one and then
/// does nothing).
fn register(db: &mut Db<'_>, me: &Incarnation, now: i64, until: i64) -> Result<bool, StoreError> {
    let (id, node) = (me.id.to_string(), me.node.as_str());
    let inserted = db.execute(
        "INSERT INTO scheduler_incarnations (id, node, started_at, alive_until)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
        params![id, node, to_ms(me.started_at), until],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    let ended = db.execute(
        "UPDATE scheduler_incarnations SET ended_at = ?3
         WHERE node = ?1 AND id != ?2 AND ended_at IS NULL",
        params![node, id, now],
    )?;
    if ended > 0 {
        log::info!("scheduler {node} restarted: its earlier run's claims are free");
    }
    db.execute(
        "DELETE FROM scheduler_incarnations WHERE ended_at < ?1 OR alive_until < ?1",
        params![now.saturating_sub(FORGET_AFTER_MS)],
    )?;
    Ok(true)
}

impl Handler<Heartbeat> for VideoStore {
    type Result = Result<Liveness, StoreError>;

    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| touch(db, &msg.incarnation, msg.now))
    }
}

impl Handler<ClaimJobs> for VideoStore {
    type Result = Result<Vec<JobRecord>, StoreError>;

    fn handle(&mut self, msg: ClaimJobs, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| claim(db, &msg))
    }
}

fn claim(db: &mut Db<'_>, msg: &ClaimJobs) -> Result<Vec<JobRecord>, StoreError> {
    if touch(db, &msg.claimer, msg.now)? == Liveness::Superseded {
        return Ok(Vec::new());
    }
    let (me, now, kind) = (msg.claimer.id.to_string(), to_ms(msg.now), msg.kind.as_str());
    // Claims of dead incarnations (not alive, ended, or forgotten) become due at once.
    db.execute(
        "UPDATE jobs SET claimed_by = NULL, next_attempt_at = ?2
         WHERE kind = ?3 AND claimed_by IS NOT NULL AND claimed_by != ?1 AND failed = 0
           AND claimed_by NOT IN (SELECT id FROM scheduler_incarnations
                                  WHERE ended_at IS NULL AND alive_until > ?2)",
        params![me, now, kind],
    )?;
    // On PostgreSQL, schedulers claiming at the same moment pass over each other's rows
    // instead of waiting for them and then taking them too; SQLite's one writer needs no lock.
    let lock = if db.is_postgres() { " FOR UPDATE SKIP LOCKED" } else { "" };
    let mut records = db.query(
        &format!(
            "SELECT {RECORD_COLS} FROM jobs
             WHERE kind = ?4 AND failed = 0 AND next_attempt_at <= ?1
               AND (claimed_by IS NULL OR claimed_by = ?3)
             ORDER BY next_attempt_at LIMIT ?2{lock}"
        ),
        params![now, msg.limit, me, kind],
        record_row,
    )?;
    let until = now.saturating_add(ms(msg.lease));
    for r in &mut records {
        db.execute(
            "UPDATE jobs SET next_attempt_at = ?2, claimed_by = ?3
             WHERE kind = ?4 AND video_id = ?1",
            params![r.video_id.to_string(), until, me, kind],
        )?;
        r.claimed_by = Some(msg.claimer.id);
    }
    Ok(records)
}
