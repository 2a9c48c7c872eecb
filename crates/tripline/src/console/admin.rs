//! Administration: console accounts and their roles, API tokens; and for everyone,
//! their own account (password, sign out everywhere).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::auth::actor;
use super::page::{self, Frame, Nav};
use super::{Console, ConsoleError, FormData, Signed, db};
use crate::access::{self, Role};

fn role_select(name: &str, id: &str, selected: Role) -> Markup {
    html! {
        select name=(name) id=(id) {
            @for role in Role::ALL {
                option value=(role.as_str()) selected[*role == selected] { (role.label()) }
            }
        }
    }
}

/// A secret shown once (a new password or token), with what to do with it.
fn shown_once(title: &str, what: &str, secret: &str) -> Markup {
    html! {
        div.notice.ok role="status" {
            strong { (title) } " " (what)
            div.copy { code #secret { (secret) } }
        }
    }
}

async fn accounts_page(
    console: &Console,
    signed: &Signed,
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let accounts = db(console, |s| s.accounts()).await?;
    let me = signed.0.account.id;
    let body = html! {
        div.page-head {
            div {
                div.crumbs { "Administration" }
                h1 { "Accounts and roles" }
                p { "Admins manage connections, accounts, tokens and settings; analysts search and investigate; viewers see dashboards." }
            }
        }
        @if let Some(n) = notice { (n) }
        div.grid {
            section.panel {
                h2 { "Accounts" }
                div.table-wrap {
                    table #accounts {
                        thead { tr { th { "Username" } th { "Role" } th { "Created" } th { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for a in &accounts {
                                tr {
                                    td { (a.username) @if a.id == me { span.muted { " (you)" } } }
                                    td {
                                        @if a.id == me {
                                            (a.role.label())
                                        } @else {
                                            form.inline method="post" action={ "/admin/accounts/" (a.id) "/role" } {
                                                (frame.csrf_field())
                                                label.visually-hidden for={ "role-" (a.id) } { "Role of " (a.username) }
                                                (role_select("role", &format!("role-{}", a.id), a.role))
                                                button type="submit" { "Change" }
                                            }
                                        }
                                    }
                                    td { (page::time(a.created_at)) }
                                    td {
                                        @if a.id != me {
                                            form.inline method="post" action={ "/admin/accounts/" (a.id) "/delete" } {
                                                (frame.csrf_field())
                                                label.check {
                                                    input type="checkbox" name="confirm" value=(a.username) required;
                                                    " Remove " (a.username)
                                                }
                                                button.danger type="submit" { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.panel {
                h2 { "Add an account" }
                form.stack method="post" action="/admin/accounts" {
                    (frame.csrf_field())
                    div {
                        label for="new-username" { "Username" }
                        input #new-username type="text" name="username" required maxlength="100" autocomplete="off";
                    }
                    div {
                        label for="new-role" { "Role" }
                        (role_select("role", "new-role", Role::Analyst))
                    }
                    p.hint { "A password is generated and shown once; the person changes it under My account." }
                    button.primary type="submit" { "Add account" }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Accounts, "Accounts", body)).into_response())
}

pub(crate) async fn accounts(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    accounts_page(&console, &signed, None, StatusCode::OK).await
}

pub(crate) async fn create_account(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["username", "role"])?;
    let bad = |m: String| html! { div.errors role="alert" { (m) } };
    let username = match access::check_username(&form.text("username")) {
        Ok(u) => u.to_owned(),
        Err(m) => return accounts_page(&console, &signed, Some(bad(m)), StatusCode::BAD_REQUEST).await,
    };
    let role: Role =
        form.text("role").parse().map_err(|e: crate::named::UnknownName| ConsoleError::BadRequest(e.to_string()))?;
    let password = access::generate_password();
    let secret = password.clone();
    let hash = tokio::task::spawn_blocking(move || access::hash_password(&secret))
        .await
        .map_err(|e| ConsoleError::internal("hashing a password", &e))?
        .map_err(ConsoleError::BadRequest)?;
    let (who, name) = (actor(&signed.0.account), username.clone());
    match db(&console, move |s| s.create_account(&name, role, &hash, &who)).await {
        Ok(_) => {
            let notice = shown_once(
                &format!("Account “{username}” ({}) added.", role.label()),
                "Its password is shown only now: give it to the person, who can change it under My account.",
                &password,
            );
            accounts_page(&console, &signed, Some(notice), StatusCode::OK).await
        }
        Err(ConsoleError::BadRequest(m)) => {
            accounts_page(&console, &signed, Some(bad(m)), StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn account_role(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["role"])?;
    if id == signed.0.account.id {
        return Err(ConsoleError::BadRequest("You cannot change your own role: ask another admin.".into()));
    }
    let role: Role =
        form.text("role").parse().map_err(|e: crate::named::UnknownName| ConsoleError::BadRequest(e.to_string()))?;
    let who = actor(&signed.0.account);
    db(&console, move |s| s.set_account_role(id, role, &who)).await?;
    Ok(Redirect::to("/admin/accounts").into_response())
}

pub(crate) async fn delete_account(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<i64>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["confirm"])?;
    if id == signed.0.account.id {
        return Err(ConsoleError::BadRequest("You cannot remove your own account.".into()));
    }
    let who = actor(&signed.0.account);
    let confirm = form.text("confirm");
    db(&console, move |s| {
        let target = s
            .accounts()?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| crate::store::StoreError::NotFound(format!("account {id}")))?;
        if target.username != confirm {
            return Err(crate::store::StoreError::Conflict(format!("Tick “Remove {}” to confirm.", target.username)));
        }
        s.delete_account(id, &who)
    })
    .await?;
    Ok(Redirect::to("/admin/accounts").into_response())
}

async fn tokens_page(
    console: &Console,
    signed: &Signed,
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let tokens = db(console, |s| s.api_tokens()).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let body = html! {
        div.page-head {
            div {
                div.crumbs { "Administration" }
                h1 { "API tokens" }
                p { "For the JSON API (" a href="/api/v1/openapi.json" { "OpenAPI" } "): " code { "Authorization: Bearer tl_..." } ". Only a hash is kept." }
            }
        }
        @if let Some(n) = notice { (n) }
        div.grid {
            section.panel {
                h2 { "Tokens" }
                @if tokens.is_empty() {
                    p.muted { "No API tokens yet." }
                } @else {
                    div.table-wrap {
                        table #tokens {
                            thead { tr { th { "Name" } th { "State" } th { "Created" } th { "Last used" } th { "Expires" } th { span.visually-hidden { "Actions" } } } }
                            tbody {
                                @for t in &tokens {
                                    tr {
                                        td { (t.name) }
                                        td {
                                            @if t.revoked_at.is_some() { span.muted { "Revoked" } }
                                            @else if t.is_valid(now) { "Valid" }
                                            @else { span.muted { "Expired" } }
                                        }
                                        td { (page::time(t.created_at)) }
                                        td { @if let Some(at) = t.last_used_at { (page::time(at)) } @else { span.muted { "Never" } } }
                                        td { @if let Some(at) = t.expires_at { (page::time(at)) } @else { span.muted { "Never" } } }
                                        td {
                                            @if t.revoked_at.is_none() {
                                                form.inline method="post" action="/admin/tokens/revoke" {
                                                    (frame.csrf_field())
                                                    input type="hidden" name="name" value=(t.name);
                                                    button.danger type="submit" aria-label={ "Revoke " (t.name) } { "Revoke" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.panel {
                h2 { "Create a token" }
                form.stack method="post" action="/admin/tokens" {
                    (frame.csrf_field())
                    div {
                        label for="token-name" { "Name" }
                        input #token-name type="text" name="name" required maxlength="100" placeholder="e.g. siem";
                        div.hint { "Who or what uses it." }
                    }
                    div {
                        label for="token-expiry" { "Expires after" }
                        select #token-expiry name="expires_in" {
                            option value="30d" { "30 days" }
                            option value="90d" selected { "90 days" }
                            option value="365d" { "1 year" }
                            option value="" { "Never" }
                        }
                    }
                    button.primary type="submit" { "Create token" }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Tokens, "API tokens", body)).into_response())
}

/// The nodes sharing the database, and which runs what.
pub(crate) async fn nodes(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let nodes = console.fleet.nodes().await?;
    let connections = db(&console, |s| s.connections()).await?;
    let work = |key: &str| -> String {
        if key == crate::store::ALERTING {
            return "Alert evaluation and notifications".into();
        }
        connections.iter().find(|c| c.id == key).map_or_else(|| key.to_owned(), |c| c.display_name.clone())
    };
    let body = html! {
        div.page-head {
            div {
                div.crumbs { "Administration › " a href="/admin/settings" { "Settings" } }
                h1 { "Nodes" }
                p { "The Tripline servers sharing this database. Each data connection runs on one node at a time; when a node stops beating, the others take its work over." }
            }
        }
        section.panel {
            div.table-wrap {
                table #nodes {
                    thead { tr { th { "Node" } th { "State" } th { "Runs" } th { "Last heartbeat" } th { "Started" } th { "Console" } } }
                    tbody {
                        @for n in &nodes {
                            tr {
                                td { strong { (n.node.name) } @if n.this_node { " " span.muted { "(this node)" } } }
                                td {
                                    @if n.live { span.badge.status-monitoring { span.dot {} "Live" } }
                                    @else { span.badge.status-error { span.dot {} "Not responding" } }
                                }
                                td {
                                    @if n.leases.is_empty() { span.muted { "Nothing" } }
                                    @else {
                                        @for l in &n.leases {
                                            div { (work(&l.key)) " " span.muted title="Fencing token: raised at each takeover" { "#" (l.token) } }
                                        }
                                    }
                                }
                                td { (page::time(n.node.heartbeat_at)) }
                                td { (page::time(n.node.started_at)) }
                                td { @if let Some(a) = &n.node.address { code { (a) } } @else { span.muted { "-" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::shell(&frame, Nav::Settings, "Nodes", body).into_response())
}

pub(crate) async fn tokens(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    tokens_page(&console, &signed, None, StatusCode::OK).await
}

pub(crate) async fn create_token(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["name", "expires_in"])?;
    let bad = |m: String| html! { div.errors role="alert" { (m) } };
    let name = match access::check_token_name(&form.text("name")) {
        Ok(n) => n.to_owned(),
        Err(m) => return tokens_page(&console, &signed, Some(bad(m)), StatusCode::BAD_REQUEST).await,
    };
    let expires_at = match form.get("expires_in").filter(|v| !v.is_empty()) {
        Some(d) => Some(
            chrono::Utc::now().timestamp_millis()
                + crate::search::parse_duration(d).map_err(|e| ConsoleError::BadRequest(e.0))?,
        ),
        None => None,
    };
    let (token, hash) = crate::api::new_token();
    let (who, stored) = (actor(&signed.0.account), name.clone());
    match db(&console, move |s| s.add_api_token(&stored, &hash, expires_at, &who)).await {
        Ok(()) => {
            let notice =
                shown_once(&format!("Token “{name}” created."), "It is shown only now: keep it secret.", &token);
            tokens_page(&console, &signed, Some(notice), StatusCode::OK).await
        }
        Err(ConsoleError::BadRequest(m)) => tokens_page(&console, &signed, Some(bad(m)), StatusCode::BAD_REQUEST).await,
        Err(e) => Err(e),
    }
}

pub(crate) async fn revoke_token(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["name"])?;
    let (who, name) = (actor(&signed.0.account), form.text("name"));
    db(&console, move |s| s.revoke_api_token(&name, &who)).await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}

async fn my_account_page(
    console: &Console,
    signed: &Signed,
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let a = &signed.0.account;
    let body = html! {
        div.page-head { div { h1 { "My account" } p { (a.username) " · " (a.role.label()) } } }
        @if let Some(n) = notice { (n) }
        div.grid.even {
            section.panel {
                h2 { "Change password" }
                form.stack method="post" action="/account/password" {
                    (frame.csrf_field())
                    div { label for="current" { "Current password" } input #current type="password" name="current" autocomplete="current-password" required; }
                    div {
                        label for="new" { "New password" }
                        input #new type="password" name="new" autocomplete="new-password" required minlength=(access::MIN_PASSWORD);
                        div.hint { "At least " (access::MIN_PASSWORD) " characters. Every session of this account ends; you sign in again." }
                    }
                    div { label for="confirm" { "Confirm new password" } input #confirm type="password" name="confirm" autocomplete="new-password" required; }
                    button.primary type="submit" { "Change password" }
                }
            }
            section.panel {
                h2 { "Sessions" }
                p { "Signed in somewhere you no longer are? End every session of this account, this one included." }
                form method="post" action="/logout/everywhere" {
                    (frame.csrf_field())
                    button.danger type="submit" { "Sign out everywhere" }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Account, "My account", body)).into_response())
}

pub(crate) async fn my_account(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    my_account_page(&console, &signed, None, StatusCode::OK).await
}

pub(crate) async fn change_password(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["current", "new", "confirm"])?;
    let bad = |m: &str| html! { div.errors role="alert" { (m) } };
    let (current, new) = (form.text("current"), form.text("new"));
    if form.get("confirm") != Some(new.as_str()) {
        return my_account_page(&console, &signed, Some(bad("The two new passwords differ.")), StatusCode::BAD_REQUEST)
            .await;
    }
    let username = signed.0.account.username.clone();
    let found = db(&console, move |s| s.account_credentials(&username)).await?;
    let checked = tokio::task::spawn_blocking(move || {
        let ok = found.is_some_and(|(_, hash)| access::verify_password(&current, &hash));
        ok.then(|| access::hash_password(&new))
    })
    .await
    .map_err(|e| ConsoleError::internal("checking a password", &e))?;
    let hash = match checked {
        None => {
            return my_account_page(
                &console,
                &signed,
                Some(bad("The current password is not correct.")),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
        Some(Err(m)) => return my_account_page(&console, &signed, Some(bad(&m)), StatusCode::BAD_REQUEST).await,
        Some(Ok(hash)) => hash,
    };
    let (id, who) = (signed.0.account.id, actor(&signed.0.account));
    db(&console, move |s| s.set_account_password(id, &hash, &who)).await?;
    Ok(Redirect::to("/login").into_response())
}

/// The corporate ranges in force: set in the console, else given to `serve`.
pub(crate) async fn corporate_ranges(console: &Console) -> Result<Vec<String>, ConsoleError> {
    let stored = db(console, |s| s.corporate_ranges()).await?;
    Ok(stored.unwrap_or_else(|| console.settings.corporate_cidrs.clone()))
}

async fn settings_page(
    console: &Console,
    signed: &Signed,
    text: Option<String>,
    notice: Option<Markup>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(console, signed).await?;
    let text = match text {
        Some(t) => t,
        None => corporate_ranges(console).await?.join("\n"),
    };
    let retention = db(console, |s| s.retention()).await?;
    let body = html! {
        div.page-head {
            div {
                div.crumbs { "Administration" }
                h1 { "Settings" }
            }
        }
        @if let Some(n) = notice { (n) }
        div.grid {
            section.panel {
                h2 { "Corporate IP ranges" }
                p { "A download from one of these ranges went to a corporate device; from anywhere else, to an unmonitored device (a risk indicator). One range per line, such as " code { "10.0.0.0/8" } " or " code { "2001:db8::/32" } "." }
                form.stack method="post" action="/admin/settings" {
                    (frame.csrf_field())
                    div {
                        label for="ranges" { "Ranges" }
                        textarea #ranges name="corporate_ranges" rows="8" spellcheck="false" { (text) }
                        div.hint { "Applies to every connection at once, for downloads from now on; stored downloads keep their destination." }
                    }
                    button.primary type="submit" { "Save ranges" }
                }
            }
            section.panel {
                h2 { "Retention" }
                p { "Downloads older than this are removed, with their hours on the dashboard. Alerts stay. Leave empty to keep them for ever." }
                form.stack method="post" action="/admin/settings/retention" {
                    (frame.csrf_field())
                    div {
                        label for="retention" { "Keep downloads for (days)" }
                        input #retention type="number" name="days" min="1" max="36500" step="1"
                            value=[retention] placeholder="For ever";
                        div.hint { "Applied within the hour. On PostgreSQL whole months are removed, once all of a month is older." }
                    }
                    button.primary type="submit" { "Save retention" }
                }
            }
            section.panel {
                h2 { "This server" }
                dl.facts {
                    dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                    dt { "OAuth callback URL" } dd { code { (console.fleet.app().redirect_uri) } }
                    dt { "Connected app" } dd { code { (console.fleet.app().client_id) } }
                    dt { "Node" } dd { (console.fleet.node().name) " · " a href="/admin/nodes" { "All nodes" } }
                }
            }
        }
    };
    Ok((status, page::shell(&frame, Nav::Settings, "Settings", body)).into_response())
}

pub(crate) async fn settings(State(console): State<Console>, signed: Signed) -> Result<Response, ConsoleError> {
    settings_page(&console, &signed, None, None, StatusCode::OK).await
}

pub(crate) async fn save_retention(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["days"])?;
    let text = form.text("days");
    let days = match text.trim() {
        "" => None,
        t => match t.parse::<u32>() {
            Ok(d) if (1..=36_500).contains(&d) => Some(d),
            _ => {
                let notice = html! { div.errors role="alert" { "Nothing changed: the retention is a whole number of days from 1 to 36,500, or empty to keep downloads for ever." } };
                return settings_page(&console, &signed, None, Some(notice), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let who = actor(&signed.0.account);
    db(&console, move |s| s.set_retention(days, &who)).await?;
    let notice = match days {
        Some(d) => {
            html! { div.notice.ok role="status" { "Downloads are kept for " (d) " days; older ones are removed within the hour." } }
        }
        None => html! { div.notice.ok role="status" { "Downloads are kept for ever." } },
    };
    settings_page(&console, &signed, None, Some(notice), StatusCode::OK).await
}

pub(crate) async fn save_settings(
    State(console): State<Console>,
    signed: Signed,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = FormData::parse(&body, &["corporate_ranges"])?;
    let text = form.text("corporate_ranges");
    let mut ranges = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match crate::events::Cidr::parse(line) {
            Ok(_) => ranges.push(line.to_owned()),
            Err(m) => errors.push(format!("Line {}: {m}", i + 1)),
        }
    }
    if !errors.is_empty() {
        let notice =
            html! { div.errors role="alert" #errors { "Nothing changed:" ul { @for e in &errors { li { (e) } } } } };
        return settings_page(&console, &signed, Some(text), Some(notice), StatusCode::BAD_REQUEST).await;
    }
    let (who, stored) = (actor(&signed.0.account), ranges.clone());
    db(&console, move |s| s.set_corporate_ranges(&stored, &who)).await?;
    // Running connectors read their ranges at start: restart them.
    for context in console.fleet.contexts().await {
        super::restart(&console, &context.connection_id).await?;
    }
    let notice = html! { div.notice.ok role="status" { "Saved " (ranges.len()) " corporate IP range(s); every connection uses them from now on." } };
    settings_page(&console, &signed, None, Some(notice), StatusCode::OK).await
}
