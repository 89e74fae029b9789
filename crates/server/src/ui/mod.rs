//! The memory inspector: HTML pages at `/ui`, rendered on the server from the service's
//! results, so reading works without JavaScript and `cargo build` is the only build step. It
//! is one more transport: it authenticates like the API (dev mode on loopback needs nothing;
//! otherwise a sign-in form takes an API key or bearer token and keeps it in a session cookie
//! scoped to `/ui`), calls the [`Service`](crate::service::Service) and renders.
//!
//! Cookie-authenticated forms are guarded against cross-site posts: the cookie is
//! `SameSite=Strict`, and every POST must come from this origin (`Origin` or
//! `Sec-Fetch-Site`), which also covers dev mode, where no cookie is needed at all.

mod layout;
mod pages;

use axum::extract::{Form, FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::service::Caller;
use crate::state::AppState;

/// The session cookie holding the credential the sign-in form took.
const COOKIE: &str = "astrocyte_ui";

/// The inspector's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::banks))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .route("/ui/tenants", get(pages::tenants))
        .route("/ui/banks/{bank_id}", get(pages::memories))
        .route(
            "/ui/banks/{bank_id}/memories/{memory_id}",
            get(pages::memory).post(pages::edit),
        )
        .route(
            "/ui/banks/{bank_id}/memories/{memory_id}/forget",
            get(pages::confirm_forget).post(pages::forget),
        )
        .route("/ui/banks/{bank_id}/recall", get(pages::recall))
        .route("/ui/banks/{bank_id}/activity", get(pages::activity))
        .route(
            "/ui/banks/{bank_id}/activity.json",
            get(pages::activity_json),
        )
}

/// Whether a path belongs to the inspector (it authenticates itself).
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/app.js"),
    )
}

/// The credential in the session cookie, if any.
fn cookie_credential(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|v| !v.is_empty())
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The request as the service sees it, with the cookie's credential presented the way API
/// clients present theirs (as an API key, and as a bearer token for token modes).
fn request_info(request: &axum::http::request::Parts) -> astrocyte_core::tenancy::RequestInfo {
    let mut info =
        crate::auth::parts_info(&request.headers, &request.extensions, request.uri.path());
    if let Some(credential) = cookie_credential(&request.headers) {
        if info.header("x-api-key").is_none() && info.header("authorization").is_none() {
            info.headers.push(("x-api-key".into(), credential.clone()));
            info.headers
                .push(("authorization".into(), format!("Bearer {credential}")));
        }
    }
    info
}

/// Who is looking, or the response to send instead (the sign-in page when credentials are
/// missing or refused).
pub(crate) async fn caller(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<Caller, Response> {
    let info = request_info(parts);
    match state.service().authenticate(&info).await {
        Ok(caller) => Ok(caller),
        Err(error) => Err(match error.code() {
            ErrorCode::Unauthenticated => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/ui");
                Redirect::to(&format!("/ui/login?next={}", layout::segment(next))).into_response()
            }
            _ => error_page(error),
        }),
    }
}

/// Whether the pages were reached through the sign-in form (they offer to sign out).
pub(crate) fn signed_in(parts: &axum::http::request::Parts) -> bool {
    cookie_credential(&parts.headers).is_some()
}

/// Whether the caller passes the admin guard (for the tenants page and its link).
pub(crate) fn is_admin(state: &AppState, parts: &axum::http::request::Parts) -> bool {
    state
        .service()
        .authorize_admin(&request_info(parts))
        .is_ok()
}

/// An error as a page with its status; internal details never reach it.
pub(crate) fn error_page(error: ApiError) -> Response {
    let code = error.code();
    let status = code.http_status();
    let message = match code {
        ErrorCode::Internal => "Something went wrong on the server; the logs say what.".to_string(),
        _ => error.to_string(),
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let body = layout::page(
        false,
        title,
        None,
        html! {
            h1 { (title) }
            p role="alert" class="error" { (message) }
            p { a href="/ui" { "Back to the banks" } }
        },
    );
    (status, body).into_response()
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only paths of the inspector are followed after signing in (never another site).
fn safe_next(next: Option<&str>) -> String {
    let stays_in_ui = |path: &str| {
        is_ui_path(path)
            && !path.starts_with("//")
            && !path.contains('\\')
            // A dot segment (plain or encoded) could climb out of /ui once resolved.
            && !path
                .split(['/', '?', '#'])
                .any(|segment| matches!(segment.to_ascii_lowercase().as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."))
            && !path.to_ascii_lowercase().contains("%2f")
            // Control characters cannot be in a Location header.
            && !path.chars().any(char::is_control)
    };
    match next {
        Some(path) if stays_in_ui(path) => path.to_string(),
        _ => "/ui".to_string(),
    }
}

fn login_page(next: &str, failed: bool) -> maud::Markup {
    layout::page(
        false,
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "This server needs a credential: an API key issued for your tenant, or a bearer token. \
                 It is kept in a session cookie for this browser session, sent only to these pages." }
            @if failed {
                p role="alert" class="error" { "That credential was refused." }
            }
            form method="post" action="/ui/login" class="stack" {
                input type="hidden" name="next" value=(next);
                label for="credential" { "API key or bearer token" }
                input id="credential" name="credential" type="password" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_form(Query(query): Query<NextQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    (StatusCode::UNAUTHORIZED, login_page(&next, false)).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    credential: String,
    next: Option<String>,
}

async fn login(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Form(form) =
        match Form::<LoginForm>::from_request(Request::from_parts(parts.clone(), body), &state)
            .await
        {
            Ok(form) => form,
            Err(rejection) => return error_page(ApiError::BadRequest(rejection.body_text())),
        };
    let next = safe_next(form.next.as_deref());
    let credential = form.credential.trim().to_string();
    // Checked now, as the pages will present it, so a typo is caught at the form.
    let encoded = layout::segment(&credential);
    parts.headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&format!("{COOKIE}={encoded}")) {
        parts.headers.insert(header::COOKIE, value);
    }
    match caller(&state, &parts).await {
        Ok(_) if !credential.is_empty() => {
            // Behind a TLS proxy the browser must never send it over plain HTTP.
            let secure = parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
            let cookie = format!(
                "{COOKIE}={encoded}; Path=/ui; HttpOnly; SameSite=Strict{}",
                if secure { "; Secure" } else { "" }
            );
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        _ => (StatusCode::UNAUTHORIZED, login_page(&next, true)).into_response(),
    }
}

async fn logout() -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("astrocyte_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inspector_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/banks/a")), "/ui/banks/a");
        for hostile in [
            "https://evil.example/ui",
            "//evil.example/ui",
            "/v1/admin/keys",
            "/ui\\..",
            "/ui/../v1/admin/keys",
            "/ui/..//evil.example",
            "/ui/%2e%2e/v1/admin/keys",
            "/ui/%2E./v1",
            "/ui/a%2F..%2F..%2Fv1",
            "/ui/\u{1}",
            "/ui/\r\nSet-Cookie: pwned=1",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/ui", "{hostile}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn cookie_values_round_trip_through_percent_encoding() {
        let credential = "ak_abc=def;ghi jkl";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "other=1; {COOKIE}={}",
                layout::segment(credential)
            ))
            .expect("header"),
        );
        assert_eq!(cookie_credential(&headers).as_deref(), Some(credential));
        assert_eq!(percent_decode("%zz"), None);
    }
}
