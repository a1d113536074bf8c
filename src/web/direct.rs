//! `POST /upload/:vid/ticket` and `POST /upload/:vid/complete`, proxied to the stream service
//! for the upload page's direct path (`--blob-store s3`): the page asks for the store's form
//! here, posts the file to the store itself, then says here that it is done. Both calls are
//! small, so they take the playback proxy's client and relay rather than the upload's pump.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::proxy::{Relay, outgoing, unreachable_stream, video_id};
use super::{Clients, WebState};
use crate::error::AppError;

/// How long the stream service may take to answer: `complete` reads the object's head and
/// first bytes from the store, which is quick unless the store is in trouble.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One step of a direct upload: the session cookie becomes `X-Session-Id`, and the stream's
/// status, headers (`Cache-Control: no-store` on a ticket) and JSON come back unchanged.
async fn relay(
    req: &HttpRequest,
    state: &WebState,
    clients: &Clients,
    step: &str,
) -> Result<HttpResponse, AppError> {
    // The cookie rides on every request to this origin, so another site's page must not be
    // able to fetch the owner's form or make the video ready.
    state.check_origin(req)?;
    let vid = video_id(req)?;
    let url = format!("{}/upload/{vid}/{step}", state.stream);
    let res = outgoing(req, clients, url, &[header::ACCEPT])
        .timeout(ANSWER_TIMEOUT)
        .send()
        .await
        .map_err(unreachable_stream)?;
    Ok(Relay::new(res.status(), res.headers()).body(res))
}

/// `POST /upload/:vid/ticket`: the store's POST policy for this video's object.
pub async fn ticket(
    req: HttpRequest,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> Result<HttpResponse, AppError> {
    relay(&req, &state, &clients, "ticket").await
}

/// `POST /upload/:vid/complete`: the object is checked and the video made ready.
pub async fn complete(
    req: HttpRequest,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> Result<HttpResponse, AppError> {
    relay(&req, &state, &clients, "complete").await
}
