//! Messages about alerts, and sending them: webhooks (JSON signed with HMAC-SHA256,
//! Slack and Teams bodies), email (SMTP) and syslog (RFC 5424 or CEF over UDP, TCP
//! or TLS). Salesforce text in a message (report names, usernames) is data: escaped
//! for each format, never markup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Alert, Channel, Target, WebhookBody};
use crate::events::FileEvent;

/// How long one attempt may take before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most events a message lists.
pub const MESSAGE_EVENTS: usize = 10;

/// What a message is about.
#[derive(Debug, Clone)]
pub struct Message {
    pub alert: Alert,
    /// The alert's first events (at most [`MESSAGE_EVENTS`]).
    pub events: Vec<FileEvent>,
    /// The alert's page in the console, when the console's address is known.
    pub link: Option<String>,
    /// The receiver's key for recognising a message it already has.
    pub idempotency_key: String,
    /// A "send test" message, not a real alert.
    pub test: bool,
}

/// Why a message could not be sent (the text is shown on the channel).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl Message {
    /// Who, as a message names them.
    fn who(&self) -> &str {
        self.alert.username.as_deref().unwrap_or(&self.alert.user_id)
    }

    /// One line: what happened.
    pub fn subject(&self) -> String {
        let test = if self.test { "[test] " } else { "" };
        format!(
            "{test}[{}] {}: {} ({} download{}, {} rows)",
            self.alert.severity.label(),
            self.alert.rule_name,
            self.who(),
            self.alert.events,
            if self.alert.events == 1 { "" } else { "s" },
            thousands(self.alert.rows)
        )
    }

    /// The reports downloaded, as plain lines.
    fn event_lines(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| {
                format!(
                    "{} {} rows of {:?} ({}, from {})",
                    rfc3339(e.observed_at),
                    thousands(e.rows),
                    e.report_name.as_deref().unwrap_or("an unnamed report"),
                    e.export_format.as_deref().unwrap_or("unknown format"),
                    e.source_ip.as_deref().unwrap_or("an unknown address"),
                )
            })
            .collect()
    }

    /// The whole message as plain text (email bodies).
    pub fn text(&self) -> String {
        let mut lines = vec![
            self.subject(),
            String::new(),
            format!("Rule: {}", self.alert.rule_name),
            format!("Severity: {}", self.alert.severity.label()),
            format!("User: {}", self.who()),
            format!("Downloads: {} ({} rows)", self.alert.events, thousands(self.alert.rows)),
            format!("First: {}", rfc3339(self.alert.first_at)),
            format!("Last: {}", rfc3339(self.alert.last_at)),
            String::new(),
        ];
        lines.extend(self.event_lines());
        if self.alert.events as usize > self.events.len() {
            lines.push(format!("... and {} more", self.alert.events as usize - self.events.len()));
        }
        if let Some(link) = &self.link {
            lines.push(String::new());
            lines.push(format!("Open in Tripline: {link}"));
        }
        lines.join("\n")
    }

    /// Tripline's JSON document.
    pub fn json(&self) -> serde_json::Value {
        let a = &self.alert;
        json!({
            "type": if self.test { "tripline.test" } else { "tripline.alert" },
            "idempotency_key": self.idempotency_key,
            "alert": {
                "id": a.id,
                "rule": {"id": a.rule_id, "name": a.rule_name},
                "severity": a.severity,
                "state": a.state,
                "user": {"id": a.user_id, "username": a.username},
                "connection_id": a.connection_id,
                "first_at": rfc3339(a.first_at),
                "last_at": rfc3339(a.last_at),
                "events": a.events,
                "rows": a.rows,
                "url": self.link,
            },
            "events": self.events.iter().map(|e| json!({
                "id": e.id,
                "observed_at": rfc3339(e.observed_at),
                "report_id": e.report_id,
                "report_name": e.report_name,
                "rows": e.rows,
                "export_format": e.export_format,
                "operation": e.operation,
                "file_name": e.file_name,
                "destination": e.destination,
                "source_ip": e.source_ip,
                "severity": e.severity,
                "indicators": e.indicators,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Slack's mrkdwn: `&`, `<` and `>` are escaped so that text cannot become a link or a
/// mention.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Markdown as Teams renders it: every character that could format is escaped.
fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_{}[]()<>#+-.!|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The body a webhook of this kind receives.
pub fn webhook_body(message: &Message, body: WebhookBody) -> String {
    match body {
        WebhookBody::Json => message.json().to_string(),
        WebhookBody::Slack => {
            let mut text = format!("*{}*", slack_escape(&message.subject()));
            for line in message.event_lines() {
                text.push_str(&format!("\n• {}", slack_escape(&line)));
            }
            if let Some(link) = &message.link {
                text.push_str(&format!("\n<{}|Open in Tripline>", slack_escape(link)));
            }
            json!({ "text": text }).to_string()
        }
        WebhookBody::Teams => {
            let mut blocks = vec![json!({
                "type": "TextBlock", "weight": "Bolder", "wrap": true, "text": markdown_escape(&message.subject())
            })];
            blocks.extend(
                message
                    .event_lines()
                    .iter()
                    .map(|l| json!({"type": "TextBlock", "wrap": true, "text": markdown_escape(l)})),
            );
            let actions: Vec<_> = message
                .link
                .iter()
                .map(|l| json!({"type": "Action.OpenUrl", "title": "Open in Tripline", "url": l}))
                .collect();
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": blocks,
                        "actions": actions,
                    }
                }]
            })
            .to_string()
        }
    }
}

/// The signature header's value: HMAC-SHA256 of `{timestamp}.{body}` with the
/// channel's secret, hex. A receiver recomputes it and refuses an old timestamp.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers Tripline's webhooks carry.
pub const SIGNATURE_HEADER: &str = "x-tripline-signature";
pub const TIMESTAMP_HEADER: &str = "x-tripline-timestamp";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Sends one message on one channel.
pub async fn send(http: &reqwest::Client, channel: &Channel, message: &Message) -> Result<(), SendError> {
    match &channel.target {
        Target::Webhook { url, secret, body } => {
            let payload = webhook_body(message, *body);
            let timestamp = Utc::now().timestamp();
            let response = http
                .post(url)
                .timeout(SEND_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature(secret, timestamp, &payload))
                .header(IDEMPOTENCY_HEADER, &message.idempotency_key)
                .body(payload)
                .send()
                .await
                .map_err(|e| SendError(salesforce::error::error_chain(&e)))?;
            let status = response.status();
            if status.is_success() { Ok(()) } else { Err(SendError(format!("the receiver answered HTTP {status}"))) }
        }
        Target::Email { .. } => Err(SendError("email channels are not available in this version".into())),
        Target::Syslog { .. } => Err(SendError("syslog channels are not available in this version".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertState;
    use crate::risk::Severity;

    fn message() -> Message {
        let mut e = FileEvent::sample();
        e.report_name = Some("<https://evil.example|Click> *bold* [x](y)".into());
        e.rows = 12_345;
        Message {
            alert: Alert {
                id: "a1".into(),
                rule_id: 1,
                rule_name: "Mass export".into(),
                severity: Severity::High,
                connection_id: "c".into(),
                user_id: "005".into(),
                username: Some("ann@example.com".into()),
                state: AlertState::Open,
                assignee: None,
                first_at: 0,
                last_at: 0,
                events: 1,
                rows: 12_345,
                created_at: 0,
                updated_at: 0,
            },
            events: vec![e],
            link: Some("https://tripline.example/alerts/a1".into()),
            idempotency_key: "a1:1".into(),
            test: false,
        }
    }

    #[test]
    fn salesforce_text_cannot_format_or_link_in_chat_bodies() {
        let m = message();
        let slack: serde_json::Value = serde_json::from_str(&webhook_body(&m, WebhookBody::Slack)).expect("json");
        let text = slack["text"].as_str().expect("text");
        assert!(text.contains("&lt;https://evil.example|Click&gt;"), "{text}");
        assert!(text.contains("<https://tripline.example/alerts/a1|Open in Tripline>"));
        let teams = webhook_body(&m, WebhookBody::Teams);
        assert!(teams.contains(r"\\[x\\]\\(y\\)"), "{teams}");
        assert_eq!(m.subject(), "[High] Mass export: ann@example.com (1 download, 12,345 rows)");
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = signature("0123456789abcdef", 1_700_000_000, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_001, "{}"));
        assert_ne!(a, signature("0123456789abcdeF", 1_700_000_000, "{}"));
    }
}
