//! `Accounts`: registration and sign-in. Owns the sign-in throttle and the password hashing
//! pool, and asks [`VideoStore`] only to read and write rows (the store never hashes).

mod hasher;
mod throttle;

use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::model::{NewUserName, Password, User, UserName};
use crate::store::{FindCredentials, InsertUser, VideoStore};

pub use hasher::{HashError, HasherConfig, PasswordHasher};
pub use throttle::{BackoffPolicy, SignInThrottle, ThrottleConfig};

/// How often forgotten throttle counts are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Why a registration or sign-in did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown user or wrong password: deliberately one variant for both.
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many recent failures for this account or this client address.
    #[error("too many failed sign-ins, retry in {retry_after:?}")]
    Throttled { retry_after: Duration },
    /// Every hashing thread is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccountError {
    /// `Retry-After` in whole seconds, at least 1 (only meaningful for `Throttled`).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            AccountError::Throttled { retry_after } => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
            _ => 1,
        }
    }
}

impl From<HashError> for AccountError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AccountError::Busy,
            HashError::Stopped => {
                AccountError::Store(StoreError::Internal("password hashing has stopped".into()))
            }
            HashError::Failed(why) => AccountError::Store(StoreError::Internal(why)),
        }
    }
}

impl From<MailboxError> for AccountError {
    fn from(e: MailboxError) -> Self {
        AccountError::Store(StoreError::Unavailable(e))
    }
}

/// Registers a user; registering does not sign in (the caller makes the session).
#[derive(Debug, Message)]
#[rtype(result = "Result<User, AccountError>")]
pub struct Register {
    pub name: NewUserName,
    pub password: Password,
}

/// Checks a name and password, throttled per account and per client address. Unknown user and
/// wrong password fail alike, in the same time.
#[derive(Debug, Message)]
#[rtype(result = "Result<User, AccountError>")]
pub struct SignIn {
    pub name: UserName,
    /// `None` when what was sent cannot be anybody's password (its length is out of range):
    /// a failure like any other, without spending a hash on it.
    pub password: Option<Password>,
    /// The client's address (see `client_ip`), for the per-address budget.
    pub client: IpAddr,
}

/// Both parts of the actor's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountsConfig {
    pub throttle: ThrottleConfig,
    pub hasher: HasherConfig,
}

/// The actor. Start it once per api service with [`Accounts::new`] and `.start()`.
#[derive(Debug)]
pub struct Accounts {
    store: Addr<VideoStore>,
    hasher: PasswordHasher,
    throttle: SignInThrottle,
    clock: SharedClock,
}

impl Accounts {
    /// Starts the hashing threads; fails only when the OS refuses a thread.
    pub fn new(
        store: Addr<VideoStore>,
        config: AccountsConfig,
        clock: SharedClock,
    ) -> std::io::Result<Self> {
        Ok(Self {
            store,
            hasher: PasswordHasher::start(config.hasher)?,
            throttle: SignInThrottle::new(config.throttle),
            clock,
        })
    }
}

impl Actor for Accounts {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |this, _| this.throttle.sweep(this.clock.now()));
    }
}

impl Handler<Register> for Accounts {
    type Result = ResponseFuture<Result<User, AccountError>>;

    fn handle(&mut self, msg: Register, _: &mut Self::Context) -> Self::Result {
        let (store, hasher) = (self.store.clone(), self.hasher.clone());
        Box::pin(async move {
            let pwd_hash = hasher.hash(msg.password).await?;
            Ok(store.send(InsertUser { name: msg.name.into_name(), pwd_hash }).await??)
        })
    }
}

impl Handler<SignIn> for Accounts {
    type Result = ResponseActFuture<Self, Result<User, AccountError>>;

    fn handle(&mut self, msg: SignIn, _: &mut Self::Context) -> Self::Result {
        // Counted now, before any await: concurrent attempts cannot all pass one check.
        let attempt = match self.throttle.begin(msg.name.key(), msg.client, self.clock.now()) {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                return Box::pin(fut::ready(Err(AccountError::Throttled { retry_after })));
            }
        };
        let (store, hasher) = (self.store.clone(), self.hasher.clone());
        Box::pin(
            async move {
                let found = store.send(FindCredentials { name: msg.name }).await??;
                let Some(password) = msg.password else { return Ok(None) };
                let (user, stored) = found.map(|c| (c.user, c.pwd_hash)).unzip();
                let ok = hasher.verify(password, stored).await?;
                Ok(user.filter(|_| ok))
            }
            .into_actor(self)
            .map(move |res: Result<Option<User>, AccountError>, act, _| match res {
                Ok(Some(user)) => {
                    act.throttle.succeeded(attempt);
                    Ok(user)
                }
                Ok(None) => {
                    act.throttle.failed(attempt);
                    Err(AccountError::BadCredentials)
                }
                Err(e) => {
                    act.throttle.abandoned(attempt);
                    Err(e)
                }
            }),
        )
    }
}
