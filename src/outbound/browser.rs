//! Sending the user to the authorization page (RFC 8252 §7.3), or to the device flow's
//! verification page (RFC 8628 §3.3).
//!
//! The URL is always printed on stderr, so a user on a headless machine (or with
//! `--remote-auth-skip-browser`) can open it elsewhere. The browser is started without a
//! shell, so nothing in the URL is interpreted (MCP Security Best Practices §OAuth
//! Authorization URL Validation). `$BROWSER` is honoured as xdg-open and the `webbrowser`
//! crate do: a colon-separated list of commands, `%s` replaced by the URL, else the URL
//! appended; tests use it to drive the login.

use std::process::{Command, Stdio};

use tracing::warn;
use url::Url;

/// Shows `url` to the user and, unless `skip`, opens it in a browser.
pub(crate) fn open(url: &Url, skip: bool, browser_env: Option<&str>) {
    eprintln!("Please open this URL in your browser to log in to the MCP server:\n  {url}");
    if !skip {
        launch(url, browser_env);
    }
}

/// Opens `url` (already shown to the user) in the browser `$BROWSER` names, else
/// xdg-open's.
pub(crate) fn launch(url: &Url, browser_env: Option<&str>) {
    if !matches!(url.scheme(), "https" | "http") {
        warn!(scheme = url.scheme(), "not opening an authorization URL that is not http(s)");
        return;
    }
    let candidates: Vec<Vec<String>> = match browser_env.filter(|b| !b.trim().is_empty()) {
        Some(list) => list.split(':').filter(|c| !c.trim().is_empty()).map(|c| command_for(c, url.as_str())).collect(),
        None => vec![vec!["xdg-open".to_owned(), url.to_string()]],
    };
    for argv in candidates {
        let spawned = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = spawned {
            // Reap it without blocking the proxy: text browsers may run until closed.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return;
        }
    }
    warn!("could not start a browser; open the URL above yourself");
}

/// The argument vector for one `$BROWSER` entry (split on whitespace, no shell).
fn command_for(entry: &str, url: &str) -> Vec<String> {
    let mut argv: Vec<String> = entry.split_whitespace().map(str::to_owned).collect();
    if argv.iter().any(|a| a.contains("%s")) {
        for a in &mut argv {
            *a = a.replace("%s", url);
        }
    } else {
        argv.push(url.to_owned());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_commands() {
        assert_eq!(command_for("firefox", "https://a/?x=1&y=$(rm)"), ["firefox", "https://a/?x=1&y=$(rm)"]);
        assert_eq!(command_for("open -a Safari %s", "https://a/"), ["open", "-a", "Safari", "https://a/"]);
    }
}
