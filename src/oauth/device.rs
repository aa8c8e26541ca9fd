//! The device authorization grant (RFC 8628), protocol only: the device authorization
//! request (§3.1) and its answer (§3.2), the device access token request (§3.4), and the
//! polling rules of §3.5: which token endpoint errors mean "poll again"
//! (`authorization_pending`, `slow_down`) and which end the login (`access_denied`,
//! `expired_token`); the interval (the server's, else 5 s; 5 s more after each
//! `slow_down`; doubled after a connection failure, §3.5's back-off); and the end of
//! polling at `expires_in`. Showing the code to the user, the browser and the login's
//! overall time limit are the client's policy ([`crate::outbound`]).
//!
//! The client authenticates at the device authorization endpoint exactly as at the token
//! endpoint (RFC 8628 §3.1), so both requests go through [`TokenEndpoint`].

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::oauth::http::{ControlClient, JsonAnswer};
use crate::oauth::token::{TokenEndpoint, TokenError, Tokens, parse_bound, refusal, scope_and_resource, seconds};

/// `grant_type` of the device access token request (RFC 8628 §3.4).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// §3.2: "If no value is provided, clients MUST use 5 as the default."
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// §3.5: after `slow_down`, "the interval MUST be increased by 5 seconds for this and all
/// subsequent requests".
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// A server's `interval: 0` must not turn polling into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The back-off after connection failures stops growing here.
const MAX_BACKOFF_INTERVAL: Duration = Duration::from_secs(60);
/// A user code is something a person types; a longer one is not a user code (and is not
/// printed on the user's terminal).
const MAX_USER_CODE_CHARS: usize = 64;

/// A device authorization response (§3.2).
pub(crate) struct DeviceAuthorization {
    /// Never shown or logged: whoever holds it gets the tokens once the user approves.
    device_code: SecretString,
    /// Shown to the user (that is its purpose), but not logged.
    pub(crate) user_code: String,
    pub(crate) verification_uri: Url,
    /// The verification URI with the user code in it, if the server gave one.
    pub(crate) verification_uri_complete: Option<Url>,
    pub(crate) expires_in: Duration,
    pub(crate) interval: Duration,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"[REDACTED]")
            .field("user_code", &"[REDACTED]")
            .field("verification_uri", &self.verification_uri.as_str())
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Why the device login ended without tokens.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceError {
    /// The device authorization endpoint refused (§3.2; RFC 6749 §5.2 errors).
    #[error("the device authorization endpoint refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    /// A success without a usable required member (named).
    #[error("the device authorization endpoint's answer has no usable {0} (RFC 8628 §3.2)")]
    Invalid(&'static str),
    /// `access_denied` (§3.5): the user (or the server's policy) refused.
    #[error("the login was denied at the authorization server (access_denied{})", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied { description: Option<String> },
    /// `expired_token` (§3.5), or `expires_in` passed without an approval.
    #[error("the user code expired before the login was approved (expired_token); a new login shows a new code")]
    Expired,
    /// Any other refusal of the token endpoint, or a failure to ask it.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The form of a device authorization request (§3.1); the client's id or authentication
/// is added by [`TokenEndpoint::post_to`]. `resource` is RFC 8707's.
fn authorization_form<'a>(scope: Option<&'a str>, resource: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
    let mut form = Vec::with_capacity(2);
    scope_and_resource(&mut form, scope, resource);
    form
}

/// Asks the device authorization endpoint at `url` for a device code and a user code.
pub(crate) async fn request_authorization(
    client: &TokenEndpoint,
    url: &Url,
    http: &ControlClient,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Result<DeviceAuthorization, DeviceError> {
    let answer = client.post_to(url, http, authorization_form(scope, resource)).await?;
    parse_authorization(&answer)
}

/// A device authorization response (§3.2), or its refusal.
fn parse_authorization(answer: &JsonAnswer) -> Result<DeviceAuthorization, DeviceError> {
    match refusal(answer) {
        Ok(()) => {}
        Err(TokenError::Refused { error, description, .. }) => return Err(DeviceError::Refused { error, description }),
        Err(other) => return Err(other.into()),
    }
    let body = &answer.body;
    let text = |k: &str| body.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let device_code = text("device_code").ok_or(DeviceError::Invalid("device_code"))?;
    let user_code = text("user_code")
        .filter(|c| c.chars().count() <= MAX_USER_CODE_CHARS && !c.chars().any(char::is_control))
        .ok_or(DeviceError::Invalid("user_code"))?;
    // Google's endpoint names it `verification_url` (an earlier draft's name).
    let web_url = |raw: &str| Url::parse(raw).ok().filter(|u| matches!(u.scheme(), "https" | "http"));
    let verification_uri = text("verification_uri")
        .or_else(|| text("verification_url"))
        .and_then(web_url)
        .ok_or(DeviceError::Invalid("verification_uri"))?;
    // Optional: a bad one is dropped, and the user types the code instead.
    let verification_uri_complete = text("verification_uri_complete").and_then(web_url);
    let expires_in = seconds(body, "expires_in").filter(|s| *s > 0).ok_or(DeviceError::Invalid("expires_in"))?;
    let interval = seconds(body, "interval").map_or(DEFAULT_INTERVAL, Duration::from_secs).max(MIN_INTERVAL);
    Ok(DeviceAuthorization {
        device_code: SecretString::from(device_code.to_owned()),
        user_code: user_code.to_owned(),
        verification_uri,
        verification_uri_complete,
        expires_in: Duration::from_secs(expires_in),
        interval,
    })
}

/// The form of a device access token request (§3.4), with RFC 8707's `resource`.
fn poll_form<'a>(auth: &'a DeviceAuthorization, resource: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
    let mut form = vec![("grant_type", DEVICE_CODE_GRANT), ("device_code", auth.device_code.expose_secret())];
    scope_and_resource(&mut form, None, resource);
    form
}

/// One device access token request; [`classify`] says what its answer means.
pub(crate) async fn poll(
    client: &TokenEndpoint,
    http: &ControlClient,
    auth: &DeviceAuthorization,
    resource: Option<&str>,
) -> Result<Tokens, TokenError> {
    // With DPoP on, the poll is a token request with a proof (RFC 9449 §5).
    parse_bound(&client.post(http, poll_form(auth, resource)).await?, client.dpop.is_some())
}

/// What one poll said.
pub(crate) enum Polled {
    /// The user approved: the tokens.
    Approved(Tokens),
    /// `authorization_pending`: the user has not finished yet.
    Pending,
    /// `slow_down`: poll again, less often.
    SlowDown,
    /// The server could not be reached or is briefly unavailable (a 5xx,
    /// `temporarily_unavailable`): poll again, backing off (§3.5).
    Unavailable,
}

/// The meaning of a token endpoint answer to a device access token request (§3.5): poll
/// again, or the login's end (tokens, or why not).
pub(crate) fn classify(answer: Result<Tokens, TokenError>) -> Result<Polled, DeviceError> {
    match answer {
        Ok(tokens) => Ok(Polled::Approved(tokens)),
        Err(TokenError::Refused { status, error, description }) => match error.as_str() {
            "authorization_pending" => Ok(Polled::Pending),
            "slow_down" => Ok(Polled::SlowDown),
            "access_denied" => Err(DeviceError::Denied { description }),
            "expired_token" => Err(DeviceError::Expired),
            "temporarily_unavailable" => Ok(Polled::Unavailable),
            _ if status >= 500 => Ok(Polled::Unavailable),
            _ => Err(TokenError::Refused { status, error, description }.into()),
        },
        Err(TokenError::Fetch(e)) if e.is_transient() => Ok(Polled::Unavailable),
        Err(e) => Err(e.into()),
    }
}

/// When to poll: every `interval`, adjusted by what the server says, until the device code
/// expires. Takes the time as an argument, so its rules are tested without waiting.
pub(crate) struct Schedule {
    interval: Duration,
    expires_at: Instant,
    polls: u32,
}

impl Schedule {
    /// For a device authorization received at `now`.
    pub(crate) fn new(auth: &DeviceAuthorization, now: Instant) -> Schedule {
        Schedule { interval: auth.interval, expires_at: now + auth.expires_in, polls: 0 }
    }

    /// How long to wait before the next poll, given what the last one said (`None` before
    /// the first: §3.4's polling starts one interval after the user was shown the code).
    /// [`DeviceError::Expired`] when that poll would come after the code expired.
    pub(crate) fn next(&mut self, last: Option<&Polled>, now: Instant) -> Result<Duration, DeviceError> {
        match last {
            Some(Polled::SlowDown) => self.interval += SLOW_DOWN_STEP,
            Some(Polled::Unavailable) => {
                self.interval = (self.interval * 2).min(MAX_BACKOFF_INTERVAL).max(self.interval)
            }
            Some(Polled::Pending | Polled::Approved(_)) | None => {}
        }
        if now + self.interval >= self.expires_at {
            return Err(DeviceError::Expired);
        }
        self.polls += 1;
        Ok(self.interval)
    }

    /// How many polls [`next`](Self::next) has scheduled.
    pub(crate) fn polls(&self) -> u32 {
        self.polls
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::oauth::http::FetchError;

    fn answer(status: u16, body: Value) -> JsonAnswer {
        JsonAnswer { status, body, max_age: None, dpop_nonce: None }
    }

    fn authorization(body: Value) -> Result<DeviceAuthorization, DeviceError> {
        parse_authorization(&answer(200, body))
    }

    fn refused(error: &str) -> Result<Tokens, TokenError> {
        Err(TokenError::Refused { status: 400, error: error.to_owned(), description: Some("why".into()) })
    }

    #[test]
    fn the_request_forms() {
        assert_eq!(
            authorization_form(Some("openid mcp:tools"), Some("https://mcp.example/mcp")),
            [("scope", "openid mcp:tools"), ("resource", "https://mcp.example/mcp")]
        );
        assert!(authorization_form(None, None).is_empty(), "the client id is post_to's");
        let auth = authorization(json!({
            "device_code": "dc-secret", "user_code": "WDJB-MJHT",
            "verification_uri": "https://as.example/device", "expires_in": 600
        }))
        .unwrap();
        assert_eq!(
            poll_form(&auth, Some("https://mcp.example/mcp")),
            [("grant_type", DEVICE_CODE_GRANT), ("device_code", "dc-secret"), ("resource", "https://mcp.example/mcp")]
        );
    }

    #[test]
    fn the_authorization_answer() {
        let auth = authorization(json!({
            "device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://as.example/device",
            "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
            "expires_in": 1800,
            "interval": 7
        }))
        .unwrap();
        assert_eq!(auth.user_code, "WDJB-MJHT");
        assert_eq!(auth.verification_uri.as_str(), "https://as.example/device");
        assert_eq!(
            auth.verification_uri_complete.as_ref().unwrap().as_str(),
            "https://as.example/device?user_code=WDJB-MJHT"
        );
        assert_eq!((auth.expires_in, auth.interval), (Duration::from_secs(1800), Duration::from_secs(7)));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("GmRhmh") && !shown.contains("WDJB"), "Debug redacts both codes: {shown}");

        // Defaults and tolerated variants: no interval is 5 s, a zero one is not a busy
        // loop, numbers as strings, Google's verification_url, a bad optional URI dropped.
        let auth = authorization(json!({
            "device_code": "d", "user_code": "u", "verification_url": "https://www.google.com/device",
            "verification_uri_complete": "javascript:alert(1)", "expires_in": "900"
        }))
        .unwrap();
        assert_eq!((auth.interval, auth.expires_in), (DEFAULT_INTERVAL, Duration::from_secs(900)));
        assert!(auth.verification_uri_complete.is_none());
        let base = json!({"device_code": "d", "user_code": "u", "verification_uri": "https://as/d", "expires_in": 60});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(authorization(with("interval", json!(0))).unwrap().interval, MIN_INTERVAL);

        // Required members, each named when missing or unusable.
        for (key, bad) in [
            ("device_code", Value::Null),
            ("user_code", json!("")),
            ("user_code", json!("\u{1b}[2Jcode")),
            ("user_code", json!("x".repeat(65))),
            ("verification_uri", json!("file:///etc/passwd")),
            ("verification_uri", Value::Null),
            ("expires_in", Value::Null),
            ("expires_in", json!(0)),
        ] {
            let e = authorization(with(key, bad.clone())).unwrap_err();
            assert!(matches!(e, DeviceError::Invalid(k) if k == key), "{key}={bad}: {e}");
        }
        let e = parse_authorization(&answer(400, json!({"error": "invalid_client", "error_description": "who?"})))
            .unwrap_err();
        assert_eq!(e.to_string(), "the device authorization endpoint refused: invalid_client (who?)");
    }

    #[test]
    fn what_a_poll_means() {
        assert!(matches!(classify(refused("authorization_pending")), Ok(Polled::Pending)));
        assert!(matches!(classify(refused("slow_down")), Ok(Polled::SlowDown)));
        assert!(matches!(classify(refused("temporarily_unavailable")), Ok(Polled::Unavailable)));
        let e = classify(refused("access_denied")).err().unwrap();
        assert!(matches!(e, DeviceError::Denied { .. }) && e.to_string().contains("access_denied: why"), "{e}");
        assert!(matches!(classify(refused("expired_token")), Err(DeviceError::Expired)));
        let e = classify(refused("invalid_grant")).err().unwrap();
        assert!(e.to_string().contains("invalid_grant"), "surfaced as the server said: {e}");
        let outage = Err(TokenError::Refused { status: 503, error: "HTTP 503".into(), description: None });
        assert!(matches!(classify(outage), Ok(Polled::Unavailable)));
        let nonsense = Err(TokenError::Fetch(FetchError::BadAnswer { url: "u".into(), what: "html".into() }));
        assert!(classify(nonsense).is_err());
        let tokens = Tokens {
            access_token: SecretString::from("at"),
            refresh_token: None,
            expires_at: None,
            scope: None,
            dpop_bound: false,
        };
        assert!(matches!(classify(Ok(tokens)), Ok(Polled::Approved(_))));
    }

    /// §3.5 on a fake clock: the server's interval, +5 s after each slow_down (kept for all
    /// later polls), doubled after an outage, and no poll scheduled at or past expires_in.
    #[test]
    fn the_polling_schedule() {
        let auth = authorization(json!({
            "device_code": "d", "user_code": "u", "verification_uri": "https://as/d",
            "expires_in": 60, "interval": 2
        }))
        .unwrap();
        let start = Instant::now();
        let mut schedule = Schedule::new(&auth, start);
        let mut now = start;
        let mut waits = Vec::new();
        let mut step = |last: Option<&Polled>| {
            let wait = schedule.next(last, now)?;
            now += wait;
            waits.push(wait.as_secs());
            Ok::<_, DeviceError>(())
        };
        step(None).unwrap();
        step(Some(&Polled::Pending)).unwrap();
        step(Some(&Polled::SlowDown)).unwrap();
        step(Some(&Polled::Pending)).unwrap();
        step(Some(&Polled::SlowDown)).unwrap();
        step(Some(&Polled::Unavailable)).unwrap();
        // 54 s gone; the next poll (24 s) would come after the code expired at 60 s.
        assert!(matches!(step(Some(&Polled::Pending)), Err(DeviceError::Expired)));
        assert_eq!(waits, [2, 2, 7, 7, 12, 24]);
        assert_eq!(schedule.polls(), 6);

        // The back-off is capped, and never shortens a long interval.
        let mut long = Schedule::new(&auth, start);
        long.interval = Duration::from_secs(50);
        long.expires_at = start + Duration::from_secs(3600);
        assert_eq!(long.next(Some(&Polled::Unavailable), start).unwrap(), MAX_BACKOFF_INTERVAL);
        long.interval = Duration::from_secs(90);
        assert_eq!(long.next(Some(&Polled::Unavailable), start).unwrap(), Duration::from_secs(90));
    }
}
