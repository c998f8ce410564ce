//! Notifications: when a run that applies steps ends failed or interrupted, a JSON summary is
//! POSTed to the URL of `--notify` (or the config file's `notify`): a Slack-compatible `text`
//! plus the run's `wasmig.run/1` document. Bounded (a timeout per attempt, three attempts)
//! and never fatal: a notification that cannot be delivered is said on stderr, and the run's
//! result stands. The URL is a secret (webhook URLs carry their token): it is never printed,
//! only its scheme and host.

use std::time::Duration;

/// Where notifications go.
#[derive(Clone, PartialEq, Eq)]
pub struct Notify {
    url: String,
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notify({})", self.shown())
    }
}

/// Attempts per notification.
const ATTEMPTS: u32 = 3;
/// Bound on one attempt (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(5);

impl Notify {
    /// Checks `url` (http or https, with a host).
    pub fn parse(url: &str) -> anyhow::Result<Notify> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(Notify {
                url: url.to_owned(),
            }),
            _ => anyhow::bail!(
                "the notify URL must be http:// or https:// with a host (it is not shown here: webhook URLs carry secrets)"
            ),
        }
    }

    /// The URL as it may be shown: scheme and host only (nothing of it at all when it
    /// carries user information anywhere, however it is spelt).
    pub fn shown(&self) -> String {
        shown(&self.url)
    }

    /// Posts `body` (JSON), up to three attempts a second apart; says on stderr when it
    /// could not be delivered. Never fails the caller.
    pub async fn send(&self, body: String) {
        let url = self.url.clone();
        let shown = self.shown();
        let sent = tokio::task::spawn_blocking(move || post(&url, &body)).await;
        match sent {
            Ok(Ok(())) => tracing::info!("notification sent to {shown}"),
            Ok(Err(why)) => crate::errln!(
                "warning: the notification to {shown} was not delivered after {ATTEMPTS} attempts ({why}); the run's result stands"
            ),
            Err(e) => crate::errln!("warning: the notification to {shown} was not sent: {e}"),
        }
    }
}

/// `url` as it may be shown: scheme and host, or only the scheme when an `@` appears
/// anywhere (user information, however malformed, is never shown in part).
fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme: String = scheme
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    if rest.contains('@') {
        return format!("{scheme}://(redacted)/...");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{}/...", crate::text::inert(host, 200))
}

/// The command line as it may be recorded: the value of every `--notify` shown as scheme
/// and host only.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_url = false;
    for a in args {
        if next_is_url {
            out.push(shown(a));
            next_is_url = false;
        } else if a == "--notify" {
            out.push(a.clone());
            next_is_url = true;
        } else if let Some(url) = a.strip_prefix("--notify=") {
            out.push(format!("--notify={}", shown(url)));
        } else {
            out.push(a.clone());
        }
    }
    out
}

fn post(url: &str, body: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        match agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("answered HTTP {}", r.status().as_u16()),
            // The error may quote the URL: only its kind is kept.
            Err(e) => last = error_kind(&e),
        }
    }
    Err(last)
}

fn error_kind(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("{}", io.kind()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        _ => "the request failed".into(),
    }
}

/// The body of a notification: a Slack-compatible `text` and the run's document.
pub fn body(text: &str, run_document: &str) -> String {
    let run: serde_json::Value =
        serde_json::from_str(run_document).unwrap_or(serde_json::Value::Null);
    crate::text::json_safe(
        serde_json::to_string(&serde_json::json!({ "text": text, "run": run })).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::Notify;

    #[test]
    fn a_webhook_url_is_shown_without_its_path_or_credentials() {
        let n = Notify::parse("https://hooks.example.com/services/T000/B000/SECRET").unwrap();
        assert_eq!(n.shown(), "https://hooks.example.com/...");
        assert!(!format!("{n:?}").contains("SECRET"));
        let n = Notify::parse("http://user:pw@10.0.0.1:8080/x?token=t").unwrap();
        assert_eq!(n.shown(), "http://(redacted)/...");
        let n = Notify::parse("https://u:p#w@host/x").unwrap();
        assert_eq!(n.shown(), "https://(redacted)/...");
        let args: Vec<String> = [
            "migrate",
            "--notify",
            "https://h.example/T/SECRET",
            "--notify=http://x/SECRET2",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let redacted = super::redact_args(&args).join(" ");
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert!(
            redacted.contains("--notify https://h.example/..."),
            "{redacted}"
        );
        assert!(Notify::parse("ftp://x").is_err());
        assert!(Notify::parse("https:///path").is_err());
    }
}
