//! Password hashing on a few dedicated threads: argon2id never runs on an arbiter, on the async
//! executor or on a SQLite thread. At most `threads` hashes run at once and at most `queue`
//! wait; past that a request is refused at once ([`HashError::Busy`]), so a flood of sign-ins
//! costs a bounded amount of memory: argon2's default takes 19 MiB per running hash, and a
//! waiting one only holds its password.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};

use crate::model::{Password, PwdHash};

/// How many hashes run at once and how many may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherConfig {
    pub threads: usize,
    pub queue: usize,
}

impl Default for HasherConfig {
    /// One thread per core (argon2 is pure CPU: more threads only share the cores), and a
    /// queue of 32: a few seconds of sign-ins at most, beyond which waiting helps nobody.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { threads: cores, queue: 32 }
    }
}

/// Why a hash was not computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Every thread is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    /// The pool's threads are gone (shutting down).
    #[error("password hashing has stopped")]
    Stopped,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// The pool; clones share it. Its threads end when the last clone is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        // The lock is held only while waiting for a job, never while running one.
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panicking hash must not take a worker with it; its caller sees `Stopped`.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a password hashing job panicked");
        }
    }
}

fn hash_password(password: &Password) -> Result<PwdHash, HashError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| PwdHash::from_phc(h.to_string()))
        .map_err(|e| HashError::Failed(e.to_string()))
}

fn verify_password(password: &Password, stored: &PwdHash) -> bool {
    PasswordHash::new(stored.as_str())
        .map(|h| Argon2::default().verify_password(password.expose().as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A real argon2id hash, with the default cost, of a random password that was thrown away:
/// verified against when the user does not exist, so that an unknown name costs the same one
/// argon2 computation as a wrong password. A constant rather than made at start-up, which would
/// cost 19 MiB of resident memory before the first sign-in (the allocator keeps it).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$g/Cr4+evKNWVMcLfUkFl7Q$x+b5mSDcT5RiZ0TZibmSrK/nIBkzd5+ZAHbxCbP8vVk";

impl PasswordHasher {
    /// Starts the pool's threads.
    pub fn start(config: HasherConfig) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || worker(rx))?;
        }
        Ok(Self { jobs: tx })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone away; the result is then simply dropped.
            let _ = tx.send(f());
        });
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => HashError::Busy,
            TrySendError::Disconnected(_) => HashError::Stopped,
        })?;
        rx.await.map_err(|_| HashError::Stopped)
    }

    /// Hashes a new password (argon2id, a fresh salt, the library's default cost).
    pub async fn hash(&self, password: Password) -> Result<PwdHash, HashError> {
        self.run(move || hash_password(&password)).await?
    }

    /// Whether `password` matches `stored`; with no stored hash (unknown user) the decoy is
    /// checked instead and the answer is `false`, in the same time.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PwdHash>,
    ) -> Result<bool, HashError> {
        self.run(move || match stored {
            Some(stored) => verify_password(&password, &stored),
            None => {
                verify_password(&password, &PwdHash::from_phc(DECOY.to_owned()));
                false
            }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn pwd(s: &str) -> Password {
        s.parse().unwrap()
    }

    #[actix::test]
    async fn hashes_verify_and_an_unknown_user_is_false() {
        let h = PasswordHasher::start(HasherConfig { threads: 1, queue: 4 }).unwrap();
        let stored = h.hash(pwd("password1")).await.unwrap();
        assert!(stored.as_str().starts_with("$argon2id$"));
        assert!(h.verify(pwd("password1"), Some(stored.clone())).await.unwrap());
        assert!(!h.verify(pwd("password2"), Some(stored)).await.unwrap());
        assert!(!h.verify(pwd("password1"), None).await.unwrap());
    }

    #[test]
    fn the_decoy_costs_what_a_new_hash_costs() {
        let decoy = PasswordHash::new(DECOY).unwrap();
        let fresh = hash_password(&pwd("password1")).unwrap();
        let fresh = PasswordHash::new(fresh.as_str()).unwrap();
        assert_eq!(decoy.algorithm, fresh.algorithm);
        assert_eq!(decoy.params, fresh.params, "argon2's default cost changed: make a new decoy");
    }

    #[actix::test]
    async fn past_the_threads_and_the_queue_requests_are_refused_at_once() {
        let h = PasswordHasher::start(HasherConfig { threads: 1, queue: 1 }).unwrap();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let mut blocker = Box::pin(h.run(move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
        }));
        assert!(futures_util::poll!(&mut blocker).is_pending(), "handed to the pool");
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        let mut queued = Box::pin(h.hash(pwd("password1")));
        assert!(futures_util::poll!(&mut queued).is_pending(), "waiting in the queue");
        let refused = h.hash(pwd("password1")).await;
        assert_eq!(refused.unwrap_err(), HashError::Busy);
        gate_tx.send(()).unwrap();
        blocker.await.unwrap();
        assert!(queued.await.is_ok(), "the queued one ran once a thread was free");
    }
}
