//! Notification channels: email, webhook and syslog, each with its delivery status,
//! a "Send test" button, and a form that never shows a stored secret again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, AlertsTab, Frame, Nav};
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::alerts::template::{PLACEHOLDERS, Templates};
use crate::alerts::{Channel, SmtpSecurity, SyslogFormat, SyslogTransport, Target, WebhookBody};
use crate::named::named_enum;

named_enum! {
    /// The kinds of channel, as the add links name them.
    pub(crate) enum Kind ("channel kind") {
        Webhook = "webhook",
        Email = "email",
        Syslog = "syslog",
    }
}

impl Kind {
    fn of(target: &Target) -> Kind {
        match target {
            Target::Webhook { .. } => Kind::Webhook,
            Target::Email { .. } => Kind::Email,
            Target::Syslog { .. } => Kind::Syslog,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Webhook => "Webhook",
            Kind::Email => "Email",
            Kind::Syslog => "Syslog",
        }
    }
}

fn bad(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::BadRequest(e.to_string())
}

pub(crate) async fn list(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    list_page(&console, &signed, None).await
}

async fn list_page(console: &Console, signed: &Signed, notice: Option<Markup>) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let (channels, health) = db(console, |s| Ok((s.channels()?, s.channel_health()?))).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let body = html! {
        div.page-head {
            div {
                h1 { "Notification channels" }
                p { "Where new alerts are sent. Each message is delivered at least once, retried with backoff while a receiver is down, and carries an idempotency key." }
            }
            div.actions {
                @for k in Kind::ALL { a.button href={ "/channels/new/" (k.as_str()) } { "Add " (k.label().to_lowercase()) } }
                a.button href="/channels/templates" { "Message template" }
            }
        }
        (page::alerts_tabs(&frame, AlertsTab::Channels))
        @if let Some(n) = notice { (n) }
        @if channels.is_empty() {
            div.empty { strong { "No channels yet." } "Add an email, webhook (Slack, Teams, SOAR) or syslog (SIEM) channel, then choose it in a rule." }
        } @else {
            div.table-wrap {
                table #channels {
                    thead { tr { th { "Channel" } th { "Kind" } th { "Sends to" } th.num { "Delivered" } th.num { "Waiting" } th.num { "Failed" } th { "Last error" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for c in &channels {
                            @let h = health.get(&c.id).cloned().unwrap_or_default();
                            tr data-channel=(c.name) class=[(h.failed > 0 || (h.pending > 0 && h.last_error.is_some())).then_some("row-error")] {
                                td { a href={ "/channels/" (c.id) } { (c.name) } @if !c.enabled { div.muted { "Disabled" } } }
                                td { (Kind::of(&c.target).label()) }
                                td.truncate title=(c.target.summary()) { (c.target.summary()) }
                                td.num { (page::thousands(h.delivered)) @if let Some(at) = h.last_delivered_at { div.muted { (page::ago(at, now)) } } }
                                td.num { (page::thousands(h.pending)) }
                                td.num { (page::thousands(h.failed)) }
                                td.truncate title=[h.last_error.as_deref()] {
                                    @if let Some(e) = &h.last_error { (e) @if let Some(at) = h.last_error_at { div.muted { (page::ago(at, now)) } } } @else { span.muted { "—" } }
                                }
                                td {
                                    form.inline method="post" action={ "/channels/" (c.id) "/test" } {
                                        (frame.csrf_field())
                                        button type="submit" { "Send test" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::shell(&frame, Nav::Alerts, "Notification channels", body).into_response())
}

/// What the form holds: the stored channel's values, or what was typed.
#[derive(Default)]
struct Entered {
    name: String,
    enabled: bool,
    fields: std::collections::HashMap<&'static str, String>,
}

impl Entered {
    fn of(channel: &Channel) -> Entered {
        let mut fields = std::collections::HashMap::new();
        let mut put = |k: &'static str, v: String| {
            fields.insert(k, v);
        };
        match &channel.target {
            Target::Webhook { url, body, .. } => {
                put("url", url.clone());
                put("body", body.as_str().to_owned());
            }
            Target::Email { host, port, security, username, from, to, ca_pem, .. } => {
                put("host", host.clone());
                put("port", port.to_string());
                put("security", security.as_str().to_owned());
                put("username", username.clone().unwrap_or_default());
                put("from", from.clone());
                put("to", to.join(", "));
                put("ca_pem", ca_pem.clone().unwrap_or_default());
            }
            Target::Syslog { host, port, transport, format, ca_pem } => {
                put("host", host.clone());
                put("port", port.to_string());
                put("transport", transport.as_str().to_owned());
                put("format", format.as_str().to_owned());
                put("ca_pem", ca_pem.clone().unwrap_or_default());
            }
        }
        Entered { name: channel.name.clone(), enabled: channel.enabled, fields }
    }

    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
}

const FIELDS: &[&str] = &[
    "name",
    "enabled",
    "url",
    "secret",
    "body",
    "host",
    "port",
    "security",
    "username",
    "password",
    "from",
    "to",
    "transport",
    "format",
    "ca_pem",
];

pub(crate) async fn new_page(
    State(console): State<Console>,
    signed: Signed,
    Path(kind): Path<String>,
) -> Result<Response, ConsoleError> {
    let kind: Kind = kind.parse().map_err(bad)?;
    let mut entered = Entered { enabled: true, ..Entered::default() };
    let defaults: &[(&'static str, &str)] = match kind {
        Kind::Webhook => &[("body", "json")],
        Kind::Email => &[("port", "587"), ("security", "starttls")],
        Kind::Syslog => &[("port", "6514"), ("transport", "tls"), ("format", "rfc5424")],
    };
    for (k, v) in defaults {
        entered.fields.insert(k, (*v).to_owned());
    }
    // A fresh signing secret to copy to the receiver.
    entered.fields.insert("secret", salesforce::oauth::random_token(32));
    render(&console, &signed, kind, None, &entered, &[], StatusCode::OK).await
}

pub(crate) async fn edit_page(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let channel = db(&console, move |s| s.channel(id)).await?;
    let entered = Entered::of(&channel);
    render(&console, &signed, Kind::of(&channel.target), Some(&channel), &entered, &[], StatusCode::OK).await
}

/// The target the form describes (secrets left empty keep the stored ones).
fn read(kind: Kind, form: &FormData, stored: Option<&Target>) -> Result<Target, Vec<String>> {
    let text = |k: &str| form.text(k).trim().to_owned();
    let optional = |k: &str| Some(text(k)).filter(|v| !v.is_empty());
    let mut errors = Vec::new();
    let mut port = || match text("port").parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            errors.push("Port: enter a number from 1 to 65535.".to_owned());
            0
        }
    };
    let ca_pem = optional("ca_pem");
    let target = match kind {
        Kind::Webhook => {
            let kept = match stored {
                Some(Target::Webhook { secret, .. }) => Some(secret.clone()),
                _ => None,
            };
            Target::Webhook {
                url: text("url"),
                secret: optional("secret").or(kept).unwrap_or_default(),
                body: text("body").parse::<WebhookBody>().unwrap_or(WebhookBody::Json),
            }
        }
        Kind::Email => {
            let kept = match stored {
                Some(Target::Email { password, .. }) => password.clone(),
                _ => None,
            };
            let port = port();
            Target::Email {
                host: text("host"),
                port,
                security: text("security").parse::<SmtpSecurity>().unwrap_or(SmtpSecurity::StartTls),
                username: optional("username"),
                password: optional("password").or(kept),
                from: text("from"),
                to: text("to")
                    .split([',', ';', '\n'])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                ca_pem,
            }
        }
        Kind::Syslog => {
            let port = port();
            Target::Syslog {
                host: text("host"),
                port,
                transport: text("transport").parse::<SyslogTransport>().unwrap_or(SyslogTransport::Tls),
                format: text("format").parse::<SyslogFormat>().unwrap_or(SyslogFormat::Rfc5424),
                ca_pem,
            }
        }
    };
    errors.extend(target.problems().iter().map(|p| page::sentence(p)));
    if errors.is_empty() { Ok(target) } else { Err(errors) }
}

async fn submit(
    console: Console,
    signed: Signed,
    kind: Kind,
    stored: Option<Channel>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, FIELDS)?;
    let name = form.text("name").trim().to_owned();
    let enabled = form.get("enabled") == Some("yes");
    let mut result = read(kind, &form, stored.as_ref().map(|c| &c.target));
    if name.is_empty() || name.chars().count() > 100 {
        let problem = "Name: enter up to 100 characters.".to_owned();
        match &mut result {
            Ok(_) => result = Err(vec![problem]),
            Err(errors) => errors.insert(0, problem),
        }
    }
    let again = |errors: Vec<String>| {
        let mut entered = Entered { name: name.clone(), enabled, ..Entered::default() };
        for k in FIELDS.iter().filter(|k| !matches!(**k, "secret" | "password" | "name" | "enabled")) {
            entered.fields.insert(k, form.text(k));
        }
        entered.fields.insert("secret", form.text("secret"));
        (entered, errors)
    };
    let target = match result {
        Ok(target) => target,
        Err(errors) => {
            let (entered, errors) = again(errors);
            return render(&console, &signed, kind, stored.as_ref(), &entered, &errors, StatusCode::BAD_REQUEST).await;
        }
    };
    let (who, id) = (actor(&signed.0.account), stored.as_ref().map(|c| c.id));
    let saved_name = name.clone();
    match db(&console, move |s| s.save_channel(id, &saved_name, &target, enabled, &who)).await {
        Ok(_) => Ok(Redirect::to("/channels").into_response()),
        Err(ConsoleError::BadRequest(m)) => {
            let (entered, errors) = again(vec![m]);
            render(&console, &signed, kind, stored.as_ref(), &entered, &errors, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn create(
    State(console): State<Console>,
    signed: Signed,
    Path(kind): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let kind: Kind = kind.parse().map_err(bad)?;
    submit(console, signed, kind, None, body).await
}

pub(crate) async fn save(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let channel = db(&console, move |s| s.channel(id)).await?;
    submit(console, signed, Kind::of(&channel.target), Some(channel), body).await
}

pub(crate) async fn test(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let channel = db(&console, move |s| s.channel(id)).await?;
    let notice = match console.alerting.send_test(&channel).await {
        Ok(()) => {
            html! { div.notice.ok role="status" #test-result { "A test message was sent to “" (channel.name) "”. Check that it arrived." } }
        }
        Err(e) => {
            html! { div.notice.bad role="alert" #test-result { "The test message to “" (channel.name) "” failed: " (e.0) } }
        }
    };
    list_page(&console, &signed, Some(notice)).await
}

pub(crate) async fn delete(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["confirm"])?;
    let channel = db(&console, move |s| s.channel(id)).await?;
    if form.get("confirm") != Some(channel.name.as_str()) {
        return Err(bad(format!("Tick the box naming “{}” to delete it.", channel.name)));
    }
    let who = actor(&signed.0.account);
    db(&console, move |s| s.delete_channel(id, &who)).await?;
    Ok(Redirect::to("/channels").into_response())
}

fn options<T: Copy + PartialEq>(
    all: &[T],
    selected: &str,
    word: impl Fn(T) -> &'static str,
    label: impl Fn(T) -> &'static str,
) -> Markup {
    html! {
        @for v in all {
            option value=(word(*v)) selected[word(*v) == selected] { (label(*v)) }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn render(
    console: &Console,
    signed: &Signed,
    kind: Kind,
    stored: Option<&Channel>,
    entered: &Entered,
    errors: &[String],
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let action = stored.map_or(format!("/channels/new/{}", kind.as_str()), |c| format!("/channels/{}", c.id));
    let title = stored.map_or(format!("Add {} channel", kind.label().to_lowercase()), |c| c.name.clone());
    let e = |k: &str| entered.get(k).to_owned();
    let body = html! {
        div.crumbs { a href="/channels" { "Notification channels" } " › " (title) }
        div.page-head { div { h1 { (title) } } }
        @if !errors.is_empty() {
            div.errors role="alert" #errors { "The channel was not saved:" ul { @for m in errors { li { (m) } } } }
        }
        form.stack #channel-form method="post" action=(action) {
            (frame.csrf_field())
            div {
                label for="name" { "Name" }
                input #name type="text" name="name" value=(entered.name) required maxlength="100";
            }
            @match kind {
                Kind::Webhook => {
                    div {
                        label for="url" { "URL" }
                        input #url type="url" name="url" value=(e("url")) required placeholder="https://hooks.example.com/tripline";
                    }
                    div {
                        label for="body" { "Body" }
                        select #body name="body" {
                            (options(WebhookBody::ALL, entered.get("body"), WebhookBody::as_str, |b| match b {
                                WebhookBody::Json => "Tripline JSON (SOAR, custom receivers)",
                                WebhookBody::Slack => "Slack incoming webhook",
                                WebhookBody::Teams => "Microsoft Teams workflow (Adaptive Card)",
                            }))
                        }
                    }
                    div {
                        label for="secret" { "Signing secret" }
                        @if stored.is_some() {
                            input #secret type="password" name="secret" value="" autocomplete="new-password" placeholder="unchanged";
                            div.hint { "Leave empty to keep the current secret." }
                        } @else {
                            input #secret type="text" name="secret" value=(e("secret")) required minlength="16" autocomplete="off";
                            div.hint { "Give it to the receiver: each request carries X-Tripline-Timestamp and X-Tripline-Signature (sha256=HMAC-SHA256 of “timestamp.body”)." }
                        }
                    }
                }
                Kind::Email => {
                    div.fields {
                        div { label for="host" { "SMTP server" } input #host type="text" name="host" value=(e("host")) required placeholder="smtp.example.com"; }
                        div { label for="port" { "Port" } input #port type="number" min="1" max="65535" name="port" value=(e("port")) required; }
                        div {
                            label for="security" { "Security" }
                            select #security name="security" {
                                (options(SmtpSecurity::ALL, entered.get("security"), SmtpSecurity::as_str, |s| match s {
                                    SmtpSecurity::StartTls => "STARTTLS (587)",
                                    SmtpSecurity::Tls => "TLS (465)",
                                    SmtpSecurity::Plain => "None (local relay only)",
                                }))
                            }
                        }
                    }
                    div.fields {
                        div { label for="username" { "Username" } input #username type="text" name="username" value=(e("username")) autocomplete="off"; }
                        div {
                            label for="password" { "Password" }
                            input #password type="password" name="password" value="" autocomplete="new-password" placeholder=(if stored.is_some() { "unchanged" } else { "" });
                        }
                    }
                    div { label for="from" { "From" } input #from type="text" name="from" value=(e("from")) required placeholder="Tripline <tripline@example.com>"; }
                    div { label for="to" { "To" } input #to type="text" name="to" value=(e("to")) required placeholder="soc@example.com, oncall@example.com"; }
                    div {
                        label for="ca_pem" { "Private CA certificate (PEM, optional)" }
                        textarea #ca_pem name="ca_pem" rows="3" { (e("ca_pem")) }
                    }
                }
                Kind::Syslog => {
                    div.fields {
                        div { label for="host" { "Host" } input #host type="text" name="host" value=(e("host")) required placeholder="siem.example.com"; }
                        div { label for="port" { "Port" } input #port type="number" min="1" max="65535" name="port" value=(e("port")) required; }
                        div {
                            label for="transport" { "Transport" }
                            select #transport name="transport" {
                                (options(SyslogTransport::ALL, entered.get("transport"), SyslogTransport::as_str, |t| match t {
                                    SyslogTransport::Udp => "UDP (514)",
                                    SyslogTransport::Tcp => "TCP (514)",
                                    SyslogTransport::Tls => "TLS (6514)",
                                }))
                            }
                        }
                        div {
                            label for="format" { "Format" }
                            select #format name="format" {
                                (options(SyslogFormat::ALL, entered.get("format"), SyslogFormat::as_str, |f| match f {
                                    SyslogFormat::Rfc5424 => "RFC 5424 with structured data",
                                    SyslogFormat::Cef => "CEF (ArcSight)",
                                }))
                            }
                        }
                    }
                    div {
                        label for="ca_pem" { "Private CA certificate (PEM, optional, TLS)" }
                        textarea #ca_pem name="ca_pem" rows="3" { (e("ca_pem")) }
                    }
                }
            }
            label.check { input type="checkbox" name="enabled" value="yes" checked[entered.enabled]; "Enabled (a disabled channel receives nothing)" }
            div.actions {
                button.primary type="submit" { "Save channel" }
                a href="/channels" { "Cancel" }
            }
        }
        @if let Some(c) = stored {
            section.panel {
                h2 { "Delete this channel" }
                p.muted { "Messages not yet delivered on it are dropped; rules stop sending to it." }
                form.inline method="post" action={ "/channels/" (c.id) "/delete" } {
                    (frame.csrf_field())
                    label.check { input type="checkbox" name="confirm" value=(c.name) required; " Delete “" (c.name) "”" }
                    button.danger type="submit" { "Delete" }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Alerts, &title, body)).into_response())
}

/// A message about a made-up alert, to preview templates with.
fn sample(templates: Templates) -> crate::alerts::notify::Message {
    let now = chrono::Utc::now().timestamp_millis();
    let mut event = crate::events::FileEvent {
        seq: 1,
        id: "sample".into(),
        connection_id: String::new(),
        observed_at: now - 60_000,
        ingested_at: now - 60_000,
        attribution: crate::events::Attribution::LoginSession,
        user_id: sfwire::id::SfId::generate(sfwire::id::prefix::USER, "0A", 1),
        username: Some("jane.doe@example.com".into()),
        email: None,
        user_name: None,
        report_id: None,
        report_name: Some("Q3 Pipeline by Rep".into()),
        report_description: None,
        report_type: None,
        report_format: None,
        export_format: Some("Excel".into()),
        operation: Some("ReportExported".into()),
        rows: 48_210,
        columns: None,
        column_count: None,
        queried_entities: None,
        execution_id: None,
        chunk_count: 5,
        file_name: String::new(),
        source_ip: Some("203.0.113.7".into()),
        browser: None,
        platform: None,
        city: None,
        country: None,
        session_key: None,
        destination: crate::events::Destination::Unmonitored,
        risk_score: 9,
        severity: crate::risk::Severity::Critical,
        indicators: Vec::new(),
        raw: Vec::new(),
    };
    event.file_name = "Q3 Pipeline by Rep.xlsx".into();
    crate::alerts::notify::Message {
        alert: crate::alerts::Alert {
            seq: 1,
            id: "sample".into(),
            rule_id: 1,
            rule_name: "Departing employee exports".into(),
            severity: crate::risk::Severity::High,
            connection_id: String::new(),
            user_id: event.user_id.to_string(),
            username: event.username.clone(),
            state: crate::alerts::AlertState::Open,
            assignee: None,
            first_at: event.observed_at,
            last_at: event.observed_at,
            events: 1,
            rows: event.rows,
            created_at: now,
            updated_at: now,
        },
        events: vec![event],
        link: Some("https://tripline.example.com/alerts/sample".into()),
        idempotency_key: "sample".into(),
        test: false,
        templates,
    }
}

pub(crate) async fn templates_page(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    let templates = db(&console, |s| s.message_templates()).await?;
    render_templates(&console, &signed, &templates, &[], None, StatusCode::OK).await
}

pub(crate) async fn save_templates(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["subject", "body", "action"])?;
    let templates = match form.get("action") {
        Some("reset") => Templates::default(),
        _ => {
            Templates { subject: form.text("subject").trim().to_owned(), body: form.text("body").replace("\r\n", "\n") }
        }
    };
    let problems = templates.problems();
    if !problems.is_empty() {
        return render_templates(&console, &signed, &templates, &problems, None, StatusCode::BAD_REQUEST).await;
    }
    if form.get("action") == Some("preview") {
        return render_templates(&console, &signed, &templates, &[], None, StatusCode::OK).await;
    }
    let (who, saved) = (actor(&signed.0.account), templates.clone());
    db(&console, move |s| s.set_message_templates(&saved, &who)).await?;
    console.alerting.set_templates(templates.clone());
    let notice = html! { div.notice.ok role="status" { "Saved. Messages sent from now on use this template." } };
    render_templates(&console, &signed, &templates, &[], Some(notice), StatusCode::OK).await
}

async fn render_templates(
    console: &Console,
    signed: &Signed,
    templates: &Templates,
    errors: &[String],
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let preview = errors.is_empty().then(|| sample(templates.clone()));
    let body = html! {
        div.crumbs { a href="/channels" { "Notification channels" } " › Message template" }
        div.page-head {
            div {
                h1 { "Message template" }
                p { "The subject and text of every message: email subject and body, the Slack and Teams text, the syslog message. Webhooks in Tripline JSON carry the facts as fields." }
            }
        }
        @if let Some(n) = notice { (n) }
        @if !errors.is_empty() {
            div.errors role="alert" #errors { "The template was not saved:" ul { @for m in errors { li { (m) } } } }
        }
        div.grid {
            form.stack.wide #template-form method="post" action="/channels/templates" {
                (frame.csrf_field())
                div {
                    label for="subject" { "Subject" }
                    input #subject type="text" name="subject" value=(templates.subject) maxlength="4000" required;
                }
                div {
                    label for="body" { "Text" }
                    textarea #body name="body" rows="12" { (templates.body) }
                }
                div.actions {
                    button.primary type="submit" name="action" value="save" { "Save template" }
                    button type="submit" name="action" value="preview" { "Preview" }
                    button type="submit" name="action" value="reset" { "Back to the default" }
                }
            }
            div {
                section.panel {
                    h2 { "Placeholders" }
                    dl.facts.side {
                        @for (name, meaning) in PLACEHOLDERS { dt { code { "{" (name) "}" } } dd { (meaning) } }
                    }
                    p.hint { "Write {{ and }} for braces." }
                }
                @if let Some(m) = preview {
                    section.panel #preview {
                        h2 { "Preview" }
                        p { strong { (m.subject()) } }
                        pre.raw { (m.text()) }
                    }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Alerts, "Message template", body)).into_response())
}
