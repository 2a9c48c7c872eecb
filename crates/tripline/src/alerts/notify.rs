//! Messages about alerts, and sending them: webhooks (JSON signed with HMAC-SHA256,
//! Slack and Teams bodies), email (SMTP) and syslog (RFC 5424 or CEF over UDP, TCP
//! or TLS). Salesforce text in a message (report names, usernames) is data: escaped
//! for each format, never markup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::template::{Templates, render};
use super::{Alert, Channel, SmtpSecurity, SyslogFormat, SyslogTransport, Target, WebhookBody};
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
    /// The subject and text as the admin set them.
    pub templates: Templates,
}

/// Why a message could not be sent (the text is shown on the channel).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 1234567 → "1,234,567".
pub fn thousands(n: i64) -> String {
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

    /// A placeholder's value.
    fn value(&self, name: &str) -> String {
        let a = &self.alert;
        match name {
            "severity" => a.severity.label().to_owned(),
            "rule" => a.rule_name.clone(),
            "user" => self.who().to_owned(),
            "downloads" => format!("{} download{}", thousands(a.events), if a.events == 1 { "" } else { "s" }),
            "rows" => thousands(a.rows),
            "first" => rfc3339(a.first_at),
            "last" => rfc3339(a.last_at),
            "events" => {
                let mut lines = self.event_lines();
                if a.events as usize > self.events.len() && !self.events.is_empty() {
                    lines.push(format!("... and {} more", a.events as usize - self.events.len()));
                }
                lines.join("\n")
            }
            "link" => self.link.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// One line: what happened (the subject template; control characters out).
    pub fn subject(&self) -> String {
        let test = if self.test { "[test] " } else { "" };
        let subject = render(&self.templates.subject, |name| self.value(name));
        format!("{test}{}", subject.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>())
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

    /// The message's text (the text template).
    pub fn text(&self) -> String {
        render(&self.templates.body, |name| self.value(name)).trim().to_owned()
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
            let text = format!("*{}*\n{}", slack_escape(&message.subject()), slack_escape(&message.text()));
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
        Target::Email { host, port, security, username, password, from, to, ca_pem } => {
            send_email(
                message,
                host,
                *port,
                *security,
                username.as_deref().zip(password.as_deref()),
                from,
                to,
                ca_pem.as_deref(),
            )
            .await
        }
        Target::Syslog { host, port, transport, format, ca_pem } => {
            let line = match format {
                SyslogFormat::Rfc5424 => rfc5424(message),
                SyslogFormat::Cef => syslog_frame(message, &cef(message)),
            };
            send_syslog(host, *port, *transport, ca_pem.as_deref(), line.as_bytes()).await
        }
    }
}

fn failed(what: &str) -> impl Fn(&dyn std::error::Error) -> SendError + '_ {
    move |e| SendError(format!("{what}: {}", salesforce::error::error_chain(e)))
}

#[allow(clippy::too_many_arguments)]
async fn send_email(
    message: &Message,
    host: &str,
    port: u16,
    security: SmtpSecurity,
    login: Option<(&str, &str)>,
    from: &str,
    to: &[String],
    ca_pem: Option<&str>,
) -> Result<(), SendError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let tls = || {
        let mut params = TlsParameters::builder(host.to_owned());
        if let Some(pem) = ca_pem {
            params = params.add_root_certificate(
                Certificate::from_pem(pem.as_bytes()).map_err(|e| failed("the CA certificate")(&e))?,
            );
        }
        params.build_rustls().map_err(|e| failed("TLS")(&e))
    };
    let tls = match security {
        SmtpSecurity::StartTls => Tls::Required(tls()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls()?),
        SmtpSecurity::Plain => Tls::None,
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).tls(tls).timeout(Some(SEND_TIMEOUT));
    if let Some((user, password)) = login {
        transport = transport.credentials(Credentials::new(user.to_owned(), password.to_owned()));
    }
    let mailbox = |text: &str| text.parse::<Mailbox>().map_err(|e| failed(text)(&e));
    let mut mail = lettre::Message::builder()
        .from(mailbox(from)?)
        .subject(message.subject())
        // Receivers that keep Message-IDs recognise a message sent again.
        .message_id(Some(format!("<{}@tripline.invalid>", message.idempotency_key.replace(':', "."))))
        .header(ContentType::TEXT_PLAIN);
    for recipient in to {
        mail = mail.to(mailbox(recipient)?);
    }
    let mail = mail.body(message.text()).map_err(|e| failed("the message")(&e))?;
    transport.build().send(mail).await.map_err(|e| failed("SMTP")(&e))?;
    Ok(())
}

/// The private enterprise number RFC 5612 sets aside for examples, naming Tripline's
/// structured data until it has its own.
const ENTERPRISE: u32 = 32473;

/// Syslog's severity for an alert's: critical is crit (2), high err (3), moderate
/// warning (4), low notice (5).
fn syslog_severity(severity: crate::risk::Severity) -> u8 {
    use crate::risk::Severity;
    match severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Moderate => 4,
        Severity::Low => 5,
        Severity::NoRisk => 6,
    }
}

/// An RFC 5424 message (facility: security/authorization) around `msg`.
fn syslog_frame(message: &Message, msg: &str) -> String {
    let pri = 4 * 8 + syslog_severity(message.alert.severity);
    let host = hostname();
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!("<{pri}>1 {now} {host} tripline - alert - {msg}")
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() { "-".into() } else { name }
}

/// An RFC 5424 message with the alert as structured data and its subject as text.
fn rfc5424(message: &Message) -> String {
    let a = &message.alert;
    // PARAM-VALUE escapes: '"', '\' and ']'.
    let value = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]");
    let sd = format!(
        "[tripline@{ENTERPRISE} alert=\"{}\" rule=\"{}\" severity=\"{}\" user=\"{}\" userId=\"{}\" events=\"{}\" rows=\"{}\" key=\"{}\"{}]",
        value(&a.id),
        value(&a.rule_name),
        a.severity,
        value(a.username.as_deref().unwrap_or_default()),
        value(&a.user_id),
        a.events,
        a.rows,
        value(&message.idempotency_key),
        message.link.as_deref().map(|l| format!(" url=\"{}\"", value(l))).unwrap_or_default(),
    );
    let pri = 4 * 8 + syslog_severity(a.severity);
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let text: String = message.subject().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("<{pri}>1 {now} {} tripline - alert {sd} \u{feff}{text}", hostname())
}

/// ArcSight's Common Event Format.
fn cef(message: &Message) -> String {
    let a = &message.alert;
    let header = |v: &str| v.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ");
    let ext = |v: &str| v.replace('\\', "\\\\").replace('=', "\\=").replace('\r', "\\r").replace('\n', "\\n");
    let severity = match a.severity {
        crate::risk::Severity::Critical => 10,
        crate::risk::Severity::High => 8,
        crate::risk::Severity::Moderate => 5,
        crate::risk::Severity::Low => 3,
        crate::risk::Severity::NoRisk => 0,
    };
    let mut extension = format!(
        "rt={} start={} end={} suser={} suid={} cnt={} cs1Label=alertId cs1={} cs2Label=idempotencyKey cs2={} cn1Label=rows cn1={}",
        Utc::now().timestamp_millis(),
        a.first_at,
        a.last_at,
        ext(a.username.as_deref().unwrap_or_default()),
        ext(&a.user_id),
        a.events,
        ext(&a.id),
        ext(&message.idempotency_key),
        a.rows,
    );
    if let Some(ip) = message.events.first().and_then(|e| e.source_ip.as_deref()) {
        extension.push_str(&format!(" src={}", ext(ip)));
    }
    if let Some(link) = &message.link {
        extension.push_str(&format!(" request={}", ext(link)));
    }
    format!(
        "CEF:0|Tripline|Tripline|{}|rule-{}|{}|{severity}|{extension}",
        env!("CARGO_PKG_VERSION"),
        a.rule_id,
        header(&a.rule_name),
    )
}

/// Sends one syslog message: a datagram over UDP; over TCP and TLS framed by octet
/// counting (RFC 6587 and RFC 5425).
async fn send_syslog(
    host: &str,
    port: u16,
    transport: SyslogTransport,
    ca_pem: Option<&str>,
    line: &[u8],
) -> Result<(), SendError> {
    use tokio::io::AsyncWriteExt;
    let work = async {
        match transport {
            SyslogTransport::Udp => {
                let socket = tokio::net::UdpSocket::bind(if host.contains(':') { "[::]:0" } else { "0.0.0.0:0" })
                    .await
                    .map_err(|e| failed("UDP")(&e))?;
                socket.send_to(line, (host, port)).await.map_err(|e| failed("UDP")(&e))?;
            }
            SyslogTransport::Tcp | SyslogTransport::Tls => {
                let framed = [format!("{} ", line.len()).as_bytes(), line].concat();
                let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| failed("connecting")(&e))?;
                if transport == SyslogTransport::Tcp {
                    let mut tcp = tcp;
                    tcp.write_all(&framed).await.map_err(|e| failed("TCP")(&e))?;
                    tcp.shutdown().await.map_err(|e| failed("TCP")(&e))?;
                } else {
                    let mut tls = tls_connect(host, ca_pem, tcp).await?;
                    tls.write_all(&framed).await.map_err(|e| failed("TLS")(&e))?;
                    tls.shutdown().await.map_err(|e| failed("TLS")(&e))?;
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(SEND_TIMEOUT, work)
        .await
        .map_err(|_| SendError("the receiver did not answer in time".into()))?
}

async fn tls_connect(
    host: &str,
    ca_pem: Option<&str>,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SendError> {
    let config = crate::tls::client_config(ca_pem).map_err(SendError)?;
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| failed("the host name")(&e))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| failed("TLS")(&e))
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
                seq: 1,
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
            templates: Templates::default(),
        }
    }

    #[test]
    fn salesforce_text_cannot_format_or_link_in_chat_bodies() {
        let m = message();
        let slack: serde_json::Value = serde_json::from_str(&webhook_body(&m, WebhookBody::Slack)).expect("json");
        let text = slack["text"].as_str().expect("text");
        assert!(text.contains("&lt;https://evil.example|Click&gt;"), "{text}");
        assert!(text.contains("https://tripline.example/alerts/a1"), "{text}");
        let teams = webhook_body(&m, WebhookBody::Teams);
        assert!(teams.contains(r"\\[x\\]\\(y\\)"), "{teams}");
        assert_eq!(m.subject(), "[High] Mass export: ann@example.com (1 download, 12,345 rows)");
    }

    #[test]
    fn templates_shape_subject_and_text() {
        let mut m = message();
        m.templates = Templates { subject: "{user} pulled {rows} rows".into(), body: "See {link}".into() };
        assert_eq!(m.subject(), "ann@example.com pulled 12,345 rows");
        assert_eq!(m.text(), "See https://tripline.example/alerts/a1");
        m.alert.username = Some("eve\r\nBcc: x@example.com".into());
        assert!(!m.subject().contains(['\r', '\n']), "a username cannot break the subject line");
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = signature("0123456789abcdef", 1_700_000_000, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("0123456789abcdef", 1_700_000_001, "{}"));
        assert_ne!(a, signature("0123456789abcdeF", 1_700_000_000, "{}"));
    }
}
