//! The JSON-over-HTTP exchange shared by the OpenAI-compatible providers: one POST with bearer
//! auth, a per-attempt timeout, and retries with capped exponential backoff plus jitter that
//! honour `Retry-After`. It knows no payload shapes; callers bring their own types.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, warn};

use crate::error::{ProviderError, Result};

/// Pause before the first retry when the configuration gives none.
pub(crate) const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between attempts (also caps `Retry-After`) when the configuration gives none.
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Server messages longer than this are cut: they end up in logs and API error bodies.
const MAX_SERVER_MESSAGE_CHARS: usize = 300;

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub(crate) max_retries: u32,
    /// Pause before the first retry; doubled for each further one.
    pub(crate) initial_backoff: Duration,
    /// Upper bound of any pause, including one asked for by `Retry-After`.
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    /// Returns the pause before retry number `retry` (0-based): the server's hint when it gave
    /// one, else `initial · 2^retry` with "equal jitter" (a random point in its upper half) so
    /// clients that failed together do not retry together; both capped at `max_backoff`.
    fn pause(&self, retry: u32, server_hint: Option<Duration>) -> Duration {
        if let Some(hint) = server_hint {
            return hint.min(self.max_backoff);
        }
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        let half = exponential / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// One endpoint of an OpenAI-compatible server, called with JSON bodies.
pub(crate) struct JsonEndpoint {
    http: reqwest::Client,
    url: Url,
    /// Names the endpoint in errors and logs (`embeddings`, `chat completions`).
    name: &'static str,
    /// Kept only to redact it from server messages that echo it.
    api_key: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for JsonEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonEndpoint")
            .field("url", &self.url.as_str())
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl JsonEndpoint {
    /// Builds the client for `{base_url}{path}`; an empty API key counts as none.
    pub(crate) fn new(
        base_url: &str,
        path: &str,
        name: &'static str,
        api_key: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let url = endpoint_url(base_url, path)?;
        if timeout.is_zero() {
            return Err(ProviderError::InvalidConfig(
                "timeout must be greater than zero".into(),
            ));
        }
        let api_key = api_key.filter(|key| !key.is_empty());
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            // The error names no part of the key on purpose.
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ProviderError::InvalidConfig(
                    "api key contains characters not allowed in an http header".into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .build()
            .map_err(|error| {
                ProviderError::InvalidConfig(format!("cannot build the http client: {error}"))
            })?;
        Ok(JsonEndpoint {
            http,
            url,
            name,
            api_key: api_key.map(str::to_owned),
            timeout,
            retry,
        })
    }

    /// POSTs `request` and decodes the success body, retrying timeouts, connection errors,
    /// 429 and 5xx; any other status fails at once because repeating it cannot help.
    pub(crate) async fn post<Req, Resp>(&self, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(request)
            .expect("provider request payloads are plain strings and numbers, always json");
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(&body).await {
                Ok(bytes) => return self.decode(&bytes),
                Err(failure) => failure,
            };
            if !failure.is_retryable() || attempts > self.retry.max_retries {
                return Err(self.give_up(failure, attempts));
            }
            let pause = self.retry.pause(attempts - 1, failure.retry_after());
            warn!(
                endpoint = self.name,
                attempt = attempts,
                pause_ms = pause.as_millis() as u64,
                reason = %failure,
                "provider request failed, retrying"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One request; returns the body of a success response.
    async fn attempt(&self, body: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
        let response = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(Failure::from_transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(Failure::from_transport)?;
        debug!(
            endpoint = self.name,
            status = status.as_u16(),
            bytes = bytes.len(),
            "provider response"
        );
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(Failure::Status {
            status,
            message: server_message(&bytes, self.api_key.as_deref()),
            retry_after,
        })
    }

    fn decode<Resp: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Resp> {
        serde_json::from_slice(bytes).map_err(|error| ProviderError::MalformedResponse {
            endpoint: self.name,
            detail: error.to_string(),
        })
    }

    fn give_up(&self, failure: Failure, attempts: u32) -> ProviderError {
        let endpoint = self.name;
        match failure {
            Failure::Status {
                status, message, ..
            } => ProviderError::Status {
                endpoint,
                status: status.to_string(),
                message,
                attempts,
            },
            Failure::Timeout => ProviderError::Timeout {
                endpoint,
                attempts,
                timeout: self.timeout,
            },
            Failure::Transport(detail) => ProviderError::Transport {
                endpoint,
                attempts,
                detail,
            },
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    Timeout,
    Transport(String),
}

impl Failure {
    fn from_transport(error: reqwest::Error) -> Failure {
        if error.is_timeout() {
            return Failure::Timeout;
        }
        // The URL is in our own messages already; the source chain holds the actual cause.
        let error = error.without_url();
        let mut detail = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure::Transport(detail)
    }

    fn is_retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Failure::Timeout | Failure::Transport(_) => true,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            Failure::Timeout | Failure::Transport(_) => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status {
                status, message, ..
            } => write!(f, "http {status}: {message}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Transport(detail) => f.write_str(detail),
        }
    }
}

/// Joins `base_url` and `path`, tolerating a trailing slash on the base.
fn endpoint_url(base_url: &str, path: &str) -> Result<Url> {
    let joined = format!("{}{path}", base_url.trim_end_matches('/'));
    let url = Url::parse(&joined).map_err(|error| {
        ProviderError::InvalidConfig(format!("base url {base_url:?} is not a url: {error}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProviderError::InvalidConfig(format!(
            "base url {base_url:?} must use http or https"
        )));
    }
    Ok(url)
}

/// Reads the server's requested pause: OpenAI's `retry-after-ms`, else `Retry-After` in
/// seconds. The HTTP-date form is ignored (providers send seconds); backoff applies then.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
    };
    number("retry-after-ms")
        .map(|millis| millis / 1000.0)
        .or_else(|| number("retry-after"))
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
}

/// Extracts a readable message from an error body (`{"error":{"message":..}}`, `{"error":..}`,
/// `{"message":..}`, `{"detail":..}` or plain text), redacts the API key and truncates it.
fn server_message(body: &[u8], api_key: Option<&str>) -> String {
    let text = String::from_utf8_lossy(body);
    let json = serde_json::from_str::<serde_json::Value>(&text).ok();
    let field = |value: &serde_json::Value, name: &str| {
        value
            .get(name)
            .and_then(|field| field.as_str())
            .map(str::to_owned)
    };
    let message = json
        .as_ref()
        .and_then(|value| {
            value
                .get("error")
                .and_then(|error| field(error, "message"))
                .or_else(|| field(value, "error"))
                .or_else(|| field(value, "message"))
                .or_else(|| field(value, "detail"))
        })
        .unwrap_or_else(|| text.trim().to_owned());
    let message = match api_key {
        Some(key) if message.contains(key) => message.replace(key, "[redacted]"),
        _ => message,
    };
    if message.is_empty() {
        return "(empty body)".into();
    }
    match message.char_indices().nth(MAX_SERVER_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        }
    }

    #[test]
    fn pauses_grow_exponentially_with_jitter_and_are_capped() {
        let policy = policy();
        for _ in 0..50 {
            let first = policy.pause(0, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.pause(2, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.pause(30, None) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn server_hint_wins_but_is_capped() {
        let policy = policy();
        let hint = Duration::from_millis(700);
        assert_eq!(policy.pause(0, Some(hint)), hint);
        assert_eq!(
            policy.pause(0, Some(Duration::from_secs(3600))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn retry_after_reads_milliseconds_then_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));

        let mut odd = HeaderMap::new();
        odd.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&odd), None);
        odd.insert("retry-after", HeaderValue::from_static("1e300"));
        assert_eq!(retry_after(&odd), None, "absurd values must not panic");
        odd.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&odd), None);
    }

    #[test]
    fn server_messages_are_extracted_redacted_and_truncated() {
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-secret","type":"invalid_request_error"}}"#;
        assert_eq!(
            server_message(openai, Some("sk-secret")),
            "Incorrect API key provided: [redacted]"
        );
        assert_eq!(
            server_message(br#"{"error":"overloaded"}"#, None),
            "overloaded"
        );
        assert_eq!(server_message(br#"{"detail":"nope"}"#, None), "nope");
        assert_eq!(server_message(b"  Bad Gateway \n", None), "Bad Gateway");
        assert_eq!(server_message(b"", None), "(empty body)");
        let long = "é".repeat(1000);
        let cut = server_message(long.as_bytes(), None);
        assert_eq!(cut.chars().count(), MAX_SERVER_MESSAGE_CHARS + 1);
    }

    #[test]
    fn endpoint_urls_are_validated() {
        let url = endpoint_url("http://127.0.0.1:8080/", "/v1/embeddings").map(String::from);
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:8080/v1/embeddings")
        );
        assert!(endpoint_url("not a url", "/v1/embeddings").is_err());
        assert!(endpoint_url("ftp://example.com", "/v1/embeddings").is_err());
    }

    #[test]
    fn unusable_settings_are_rejected_without_echoing_the_key() {
        let bad_key = JsonEndpoint::new(
            "http://127.0.0.1:1",
            "/v1/x",
            "x",
            Some("sk-line\nbreak"),
            Duration::from_secs(1),
            policy(),
        );
        let message = bad_key.map(|_| ()).map_err(|e| e.to_string()).err();
        assert!(message.as_deref().is_some_and(|m| !m.contains("sk-line")));
        let zero_timeout = JsonEndpoint::new(
            "http://127.0.0.1:1",
            "/v1/x",
            "x",
            None,
            Duration::ZERO,
            policy(),
        );
        assert!(zero_timeout.is_err());
    }
}
