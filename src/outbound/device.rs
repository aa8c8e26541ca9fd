//! The device login (`--remote-auth-grant-type device_code`, RFC 8628): for a proxy on a
//! machine without a browser, or whose user is elsewhere. After the same discovery as the
//! browser login, the proxy asks the server's device authorization endpoint for a code,
//! shows the verification URI and the user code on stderr (and opens `$BROWSER` unless
//! `--remote-auth-skip-browser`), then polls the token endpoint until the user approved,
//! refused, or the code expired, and at most `--remote-auth-timeout`. No callback
//! listener: the user's browser never comes back to the proxy.
//!
//! Meanwhile the state is `Pending`, so requests are answered 503 with `Retry-After` like
//! during the browser login; the tokens are then kept, refreshed and saved like the
//! browser login's (`tokens`, `resume`). The protocol (forms, answers, error codes, the
//! polling interval) is [`crate::oauth::device`]'s; this file is the policy: which client,
//! what the user is shown, and the overall time limit.

use std::time::Instant;

use tracing::{debug, info};

use crate::oauth::device::{DeviceAuthorization, Polled, Schedule, classify, poll, request_authorization};
use crate::outbound::scope::select_scope;
use crate::outbound::{LoginError, OAuth, Session, browser};
use crate::telemetry::metrics::Count;

impl OAuth {
    /// A device login; `step_up` adds scopes.
    pub(super) async fn device_login(&self, session: &mut Session, step_up: Option<&str>) -> Result<(), LoginError> {
        // Config requires --remote-auth-client-id with this grant (a registered client has
        // redirect URIs and the authorization code grant, not this one).
        let client = self.configured_client(session).ok_or(LoginError::NoRegistration)?;
        session.client = Some(client.clone());
        let discovery = session.discovery.as_ref().ok_or(LoginError::NotRequired)?;
        let server = &discovery.server;
        let device_endpoint = server
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| LoginError::NoDeviceEndpoint { server: server.name() })?;
        let scope = select_scope(&self.cfg.scopes, discovery, session.scope.as_deref(), step_up);
        let endpoint = self.token_endpoint(session, &client);
        let published = self.resource(session);
        let resource = Some(published.as_str());
        let auth = request_authorization(&endpoint, &device_endpoint, &self.http, scope.as_deref(), resource).await?;
        let started = Instant::now();
        self.show(&auth);
        let mut schedule = Schedule::new(&auth, started);
        // Bounded: every wait is at least a second, and the schedule ends at expires_in;
        // the timeout ends it sooner when --remote-auth-timeout is shorter.
        let polling = async {
            let mut last = None;
            loop {
                let wait = schedule.next(last.as_ref(), Instant::now())?;
                tokio::time::sleep(wait).await;
                let polled = match classify(poll(&endpoint, &self.http, &auth, resource).await)? {
                    Polled::Approved(tokens) => return Ok::<_, LoginError>(tokens),
                    again => again,
                };
                match polled {
                    Polled::Pending => debug!("the device login is not approved yet"),
                    Polled::SlowDown => info!("the authorization server asked to poll less often (slow_down)"),
                    Polled::Unavailable => info!("the token endpoint is unavailable; polling less often"),
                    Polled::Approved(_) => {}
                }
                last = Some(polled);
            }
        };
        let tokens = match tokio::time::timeout(self.cfg.timeout, polling).await {
            Ok(outcome) => outcome?,
            Err(_) => return Err(LoginError::DeviceTimedOut(self.cfg.timeout)),
        };
        info!(
            polls = schedule.polls(),
            seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "the device login was approved; logged in to the MCP server"
        );
        session.scope = scope;
        self.activate(session, &tokens);
        self.count(Count::OutboundLogin { ok: true });
        Ok(())
    }

    /// Tells the user where to go and what to type (on stderr, not in the log: the user
    /// code is for the user), and opens the page unless `--remote-auth-skip-browser`.
    fn show(&self, auth: &DeviceAuthorization) {
        let mut text = format!(
            "To log in to the MCP server, open this URL in a browser and enter the code {}:\n  {}",
            auth.user_code, auth.verification_uri
        );
        if let Some(complete) = &auth.verification_uri_complete {
            text.push_str(&format!("\nor open this URL, which carries the code:\n  {complete}"));
        }
        let limit = self.cfg.timeout.min(auth.expires_in);
        eprintln!("{text}\nWaiting for the login to the MCP server (up to {limit:?})…");
        if !self.cfg.skip_browser {
            browser::launch(
                auth.verification_uri_complete.as_ref().unwrap_or(&auth.verification_uri),
                self.browser.as_deref(),
            );
        }
    }
}
