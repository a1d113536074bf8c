//! The stream limiter at the HTTP edge: who the client is (session, else IP through trusted
//! proxies only), one `Acquire` per request, and a response body that owns the slot until it
//! has been fully sent or the connection is gone.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};
use actors::limiter::{Acquire, ClientKey, SlotPermit};
use actors::model::UserId;
use bytes::Bytes;
use prometheus::IntGauge;

use super::StreamState;
use crate::auth::caller;
use crate::client_ip::client_ip;
use crate::error::AppError;

/// The bucket key: the signed-in user (whichever of their sessions is presented), else the
/// client IP. An unknown or expired session counts as no session, so made-up ids cannot mint
/// buckets. `caller` is the request's resolved session, if any.
pub(super) fn client_key(
    caller: Option<UserId>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    state: &StreamState,
) -> ClientKey {
    if let Some(user) = caller {
        return ClientKey::User(user);
    }
    // Without a peer address (only in unit-test requests) everyone shares one bucket.
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let xff = headers.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
    ClientKey::Ip(client_ip(peer, xff, &state.trusted_proxies))
}

/// A token and a slot for `client`, or the 429 (or the limiter's failure) to answer with.
pub(super) async fn admit(state: &StreamState, client: ClientKey) -> Result<Slot, AppError> {
    match state.limiter.send(Acquire { client }).await? {
        Ok(permit) => Ok(Slot::new(permit, state.metrics.active.clone())),
        Err(rejected) => {
            state.metrics.rejections.inc();
            log::debug!("stream limiter: {rejected}");
            Err(AppError::RateLimited { retry_after_secs: rejected.retry_after_secs() })
        }
    }
}

/// Middleware on the stream routes: a token and a slot, or 429 with `Retry-After`.
pub async fn limit(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<PermitBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<StreamState>>().cloned() else {
        log::error!("StreamState is not registered on the stream service");
        return Err(AppError::Internal.into());
    };
    let user = caller(req.request()).await.ok().flatten().map(|(user, _)| user.id);
    let client = client_key(user, req.peer_addr(), req.headers(), &state);
    let slot = match admit(&state, client).await {
        Ok(slot) => slot,
        Err(err) => {
            return Ok(req
                .into_response(err.error_response())
                .map_body(|_, b| PermitBody::none(b)));
        }
    };
    // While the handler runs (an upload), the slot lives in this future: a client that goes
    // away drops the future and with it the slot.
    let res = next.call(req).await?;
    Ok(res.map_body(move |_, body| PermitBody { body, slot: Some(slot) }))
}

/// A held slot, counted in the active-streams gauge.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: SlotPermit,
    active: IntGauge,
}

impl Slot {
    fn new(permit: SlotPermit, active: IntGauge) -> Self {
        active.inc();
        Self { _permit: permit, active }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// A response body that releases its slot when it ends or is dropped (client gone).
pub struct PermitBody {
    body: BoxBody,
    slot: Option<Slot>,
}

impl PermitBody {
    fn none(body: BoxBody) -> Self {
        Self { body, slot: None }
    }
}

impl MessageBody for PermitBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Fully sent (or failed): free the slot now rather than when the connection's
            // next request replaces this body.
            this.slot = None;
        }
        next
    }
}
