//! `/user` and `/user/:username`: register, sign in, who am I, sign out.

use actix_web::{HttpRequest, HttpResponse, web};
use actors::accounts::{Register, SignIn};
use actors::model::{NewUserName, Password, UserName};
use actors::session::{CreateSession, RevokeSession};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use crate::auth::Authenticated;
use crate::client_ip;
use crate::error::AppError;

#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    user_name: String,
    pwd: String,
}

#[derive(Debug, Deserialize)]
pub struct SignInBody {
    pwd: String,
    user_name: Option<String>,
}

/// Only the caller's own account may be read or signed out. Names are compared by key, so
/// `/user/ALICE` is alice's own; an account the name-key migration displaced (its key is not
/// its name's key) is also matched by its exact name.
pub(super) fn require_self(auth: &Authenticated, name: &UserName) -> Result<(), AppError> {
    if auth.user.name_key == name.key() || auth.user.name == name.as_str() {
        Ok(())
    } else {
        Err(AppError::Forbidden("this account belongs to someone else"))
    }
}

fn session_created(status: actix_web::http::StatusCode, token: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "success": true, "session_id": token }))
}

/// `POST /user`: registering signs in.
pub async fn register(
    state: web::Data<ApiState>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let name: NewUserName = body.user_name.parse()?;
    let password: Password = body.pwd.parse()?;
    let user = state.accounts.send(Register { name, password }).await??;
    let token = state.sessions.send(CreateSession { user }).await??;
    Ok(session_created(actix_web::http::StatusCode::CREATED, token.expose()))
}

/// `POST /user/:username`: sign in; the same 401 for an unknown user and a wrong password,
/// 429 after repeated failures for the account or from the address.
pub async fn sign_in(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<SignInBody>,
) -> Result<HttpResponse, AppError> {
    let name: UserName = path.parse()?;
    let body = body.into_inner();
    let same = |n: &str| n.parse::<UserName>().is_ok_and(|n| n.key() == name.key());
    if body.user_name.as_deref().is_some_and(|n| !same(n)) {
        return Err(AppError::BadRequest("user_name must equal the name in the path".into()));
    }
    // A password of the wrong length cannot be anybody's: a failure like a wrong one.
    let password = body.pwd.parse::<Password>().ok();
    let client = client_ip::of_request(&req, &state.trusted_proxies);
    let user = state.accounts.send(SignIn { name, password, client }).await??;
    let token = state.sessions.send(CreateSession { user }).await??;
    Ok(session_created(actix_web::http::StatusCode::OK, token.expose()))
}

/// `GET /user/:username`: the signed-in user's own record.
pub async fn get_user(
    path: web::Path<String>,
    auth: Authenticated,
) -> Result<HttpResponse, AppError> {
    let name: UserName = path.parse()?;
    require_self(&auth, &name)?;
    Ok(HttpResponse::Ok().json(json!({ "id": auth.user.id.0, "user_name": auth.user.name })))
}

/// `DELETE /user/:username`: sign out; the presented session stops working at once.
pub async fn sign_out(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    auth: Authenticated,
) -> Result<HttpResponse, AppError> {
    let name: UserName = path.parse()?;
    require_self(&auth, &name)?;
    state.sessions.send(RevokeSession { token: auth.token }).await??;
    Ok(HttpResponse::NoContent().finish())
}
