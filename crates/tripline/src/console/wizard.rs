//! Add data connection, the three steps of the seed: (1) Salesforce under Business
//! tools, a unique display name and the prerequisites to confirm; (2) who to monitor:
//! all, a CSV of users or a CSV of public groups; (3) the optional My Domain, then
//! Salesforce's sign-in and consent, and back at the callback, Allow or Deny.
//!
//! A draft lives in memory between the steps (an hour at most, its owner's only), so
//! nothing half-made is ever stored: the connection exists once Salesforce allowed it
//! and the scope was checked against the org.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use salesforce::login::LoginHost;
use salesforce::oauth::{AuthorizationStart, MONITORING_SCOPE};

use super::auth::actor;
use super::page::{self, Frame, Nav};
use super::{Console, ConsoleError, Signed, db};
use crate::connection::ScopeMode;
use crate::connector::NewConnection;
use crate::connector::scope_csv::{CsvError, CsvKind, ScopeCsv};

/// How long a draft is kept.
const DRAFT_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest scope file.
const MAX_CSV: usize = 2 * 1024 * 1024;

/// A connection being added.
#[derive(Clone)]
struct Draft {
    owner: i64,
    created: Instant,
    name: String,
    scope: Option<(ScopeMode, Option<Vec<usize>>)>,
    /// The uploaded file's name, shown when going back to step 2.
    file_name: Option<String>,
    my_domain: String,
    /// The sign-in in progress at Salesforce.
    pending: Option<(AuthorizationStart, LoginHost)>,
    /// Authorizing an existing connection again (by id) instead of adding one.
    reauthorize: Option<String>,
}

#[derive(Default)]
pub(crate) struct Drafts(Mutex<HashMap<String, Draft>>);

impl Drafts {
    fn get(&self, id: &str, owner: i64) -> Option<Draft> {
        let mut drafts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        drafts.retain(|_, d| d.created.elapsed() < DRAFT_LIFETIME);
        drafts.get(id).filter(|d| d.owner == owner).cloned()
    }

    fn put(&self, id: &str, draft: Draft) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), draft);
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The draft whose Salesforce sign-in carries this `state`.
    fn by_state(&self, state: &str, owner: i64) -> Option<(String, Draft)> {
        let drafts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        drafts
            .iter()
            .find(|(_, d)| {
                d.owner == owner
                    && d.pending
                        .as_ref()
                        .is_some_and(|(start, _)| super::constant_time_eq(start.state.as_bytes(), state.as_bytes()))
            })
            .map(|(id, d)| (id.clone(), d.clone()))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepQuery {
    draft: Option<String>,
    step: Option<u8>,
}

/// A step's form as the person left it, with what was wrong.
#[derive(Default)]
struct Entered {
    name: String,
    completed: bool,
    scope: String,
    my_domain: String,
    /// (field, message); field "" for the whole form.
    errors: Vec<(String, String)>,
    /// A message at the top of the step (Salesforce's answer after a sign-in).
    notice: Option<String>,
}

impl Entered {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }
}

pub(crate) async fn step_page(
    State(console): State<Console>,
    signed: Signed,
    Query(query): Query<StepQuery>,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let owner = signed.0.account.id;
    let Some(id) = query.draft else {
        return Ok(render(&console, &frame, 1, None, Entered::default()).into_response());
    };
    let Some(draft) = console.drafts.get(&id, owner) else {
        return Ok(Redirect::to("/admin/connections/new").into_response());
    };
    let step = query.step.unwrap_or(1).clamp(1, 3);
    // A step after one not yet done shows that one.
    let step = if step == 3 && draft.scope.is_none() { 2 } else { step };
    let my_domain = match (&console.settings.suggested_my_domain, draft.pending.is_some()) {
        (Some(suggested), false) => suggested.clone(),
        _ => draft.my_domain.clone(),
    };
    let entered = Entered {
        name: draft.name.clone(),
        completed: true,
        scope: draft.scope.as_ref().map(|(s, _)| s.name().to_owned()).unwrap_or_else(|| "all".into()),
        my_domain,
        ..Entered::default()
    };
    Ok(render(&console, &frame, step, Some((&id, &draft)), entered).into_response())
}

/// A multipart form's parts: text fields, and the uploaded file (name and bytes).
pub(crate) struct Submitted {
    pub fields: HashMap<String, String>,
    pub file: Option<(String, Vec<u8>)>,
}

/// Reads a form with a scope file (`file`) and the `known` text fields (besides
/// `csrf`); any other field is refused, and so is a file over [`MAX_CSV`].
pub(crate) async fn read_form(mut form: Multipart, known: &[&str]) -> Result<Submitted, ConsoleError> {
    let bad = |m: String| ConsoleError::BadRequest(m);
    let mut submitted = Submitted { fields: HashMap::new(), file: None };
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("the form could not be read: {e}")))? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload.csv").to_owned();
            let bytes = field.bytes().await.map_err(|e| bad(format!("the file could not be read: {e}")))?;
            if bytes.len() > MAX_CSV {
                return Err(bad(format!("a scope file has at most {} MB", MAX_CSV / 1024 / 1024)));
            }
            if !bytes.is_empty() {
                submitted.file = Some((file_name, bytes.to_vec()));
            }
        } else if name == "csrf" || known.contains(&name.as_str()) {
            let text = field.text().await.map_err(|e| bad(format!("the form could not be read: {e}")))?;
            submitted.fields.insert(name, text);
        } else {
            return Err(bad(format!("the form has an unknown field {name:?}")));
        }
    }
    Ok(submitted)
}

pub(crate) async fn step_submit(
    State(console): State<Console>,
    signed: Signed,
    form: Multipart,
) -> Result<Response, ConsoleError> {
    let form = read_form(form, &["draft", "step", "name", "completed", "scope", "my_domain"]).await?;
    let frame = Frame::load(&console, &signed).await?;
    let owner = signed.0.account.id;
    let field = |name: &str| form.fields.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let draft_id = field("draft");
    let existing = (!draft_id.is_empty()).then(|| console.drafts.get(&draft_id, owner)).flatten();
    let step: u8 = field("step").parse().map_err(|_| ConsoleError::BadRequest("the form names no step".into()))?;
    if step > 1 && existing.is_none() {
        // The draft expired (or the server restarted): start again.
        return Ok(Redirect::to("/admin/connections/new").into_response());
    }
    let invalid = |step: u8, entered: Entered, draft: Option<(&str, &Draft)>| {
        (StatusCode::BAD_REQUEST, render(&console, &frame, step, draft, entered)).into_response()
    };
    match step {
        1 => {
            let name = field("name");
            let completed = field("completed") == "yes";
            let mut entered = Entered { name: name.clone(), completed, ..Entered::default() };
            if name.is_empty() {
                entered.errors.push(("name".into(), "Enter a display name.".into()));
            } else if name.chars().count() > 100 || name.chars().any(char::is_control) {
                entered.errors.push(("name".into(), "A display name is at most 100 printable characters.".into()));
            } else {
                let taken = name.clone();
                let exists = db(&console, move |s| {
                    Ok(s.connections()?.iter().any(|c| c.display_name.to_lowercase() == taken.to_lowercase()))
                })
                .await?;
                if exists {
                    entered.errors.push(("name".into(), format!("A connection named “{name}” already exists.")));
                }
            }
            if !completed {
                entered
                    .errors
                    .push(("completed".into(), "Confirm that you have completed the steps in Salesforce.".into()));
            }
            let id = if draft_id.is_empty() { salesforce::oauth::random_token(12) } else { draft_id };
            if !entered.errors.is_empty() {
                return Ok(invalid(1, entered, existing.as_ref().map(|d| (id.as_str(), d))));
            }
            let draft = match existing {
                Some(d) => Draft { name, ..d },
                None => Draft {
                    owner,
                    created: Instant::now(),
                    name,
                    scope: None,
                    file_name: None,
                    my_domain: String::new(),
                    pending: None,
                    reauthorize: None,
                },
            };
            console.drafts.put(&id, draft);
            Ok(Redirect::to(&format!("/admin/connections/new?draft={id}&step=2")).into_response())
        }
        2 => {
            let mut draft = existing.ok_or_else(|| ConsoleError::BadRequest("no draft".into()))?;
            let scope = field("scope");
            let mut entered =
                Entered { name: draft.name.clone(), completed: true, scope: scope.clone(), ..Entered::default() };
            let kind = match scope.as_str() {
                "all" => None,
                "users" => Some(CsvKind::Users),
                "groups" => Some(CsvKind::Groups),
                _ => {
                    entered.errors.push(("scope".into(), "Choose who to monitor.".into()));
                    return Ok(invalid(2, entered, Some((&draft_id, &draft))));
                }
            };
            match (kind, &form.file) {
                (None, _) => {
                    draft.scope = Some((ScopeMode::All, None));
                    draft.file_name = None;
                }
                (Some(kind), Some((file_name, bytes))) => match ScopeCsv::parse(bytes, kind) {
                    Ok(csv) => {
                        let new = NewConnection::from_csv(&draft.name, &csv, Vec::new());
                        draft.scope = Some((new.scope, new.scope_lines));
                        draft.file_name = Some(file_name.clone());
                    }
                    Err(e) => {
                        entered.errors = file_errors(file_name, &e);
                        return Ok(invalid(2, entered, Some((&draft_id, &draft))));
                    }
                },
                (Some(kind), None) => {
                    // Going back and forth keeps the list already uploaded for this choice.
                    let same = draft.scope.as_ref().is_some_and(|(s, _)| s.name() == scope);
                    if !same {
                        let what = if kind == CsvKind::Users { "users" } else { "groups" };
                        entered
                            .errors
                            .push(("file".into(), format!("Upload a CSV file listing the {what} to monitor.")));
                        return Ok(invalid(2, entered, Some((&draft_id, &draft))));
                    }
                }
            }
            console.drafts.put(&draft_id, draft);
            Ok(Redirect::to(&format!("/admin/connections/new?draft={draft_id}&step=3")).into_response())
        }
        3 => {
            let mut draft = existing.ok_or_else(|| ConsoleError::BadRequest("no draft".into()))?;
            let my_domain = field("my_domain");
            let allowed = &console.fleet.app().allowed_origins;
            let login = if my_domain.is_empty() {
                Ok(LoginHost::production())
            } else {
                LoginHost::parse(&my_domain, allowed).map_err(|e| e.to_string())
            };
            let login = match login {
                Ok(l) => l,
                Err(m) => {
                    let entered = Entered {
                        name: draft.name.clone(),
                        completed: true,
                        my_domain,
                        errors: vec![("my_domain".into(), m)],
                        ..Entered::default()
                    };
                    return Ok(invalid(3, entered, Some((&draft_id, &draft))));
                }
            };
            let start = console.fleet.app().oauth(login.clone(), reqwest::Client::new()).start(MONITORING_SCOPE);
            let to = start.url.clone();
            draft.my_domain = my_domain;
            draft.pending = Some((start, login));
            console.drafts.put(&draft_id, draft);
            Ok(Redirect::to(&to).into_response())
        }
        _ => Err(ConsoleError::BadRequest("the form names no step".into())),
    }
}

/// A CSV's problems as errors of the form's file field.
fn file_errors(file_name: &str, e: &CsvError) -> Vec<(String, String)> {
    e.messages(file_name).into_iter().map(|m| ("file".to_owned(), m)).collect()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Salesforce sends the browser back here after Allow or Deny.
pub(crate) async fn callback(
    State(console): State<Console>,
    signed: Signed,
    Query(answer): Query<Callback>,
) -> Result<Response, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let owner = signed.0.account.id;
    let state = answer.state.clone().unwrap_or_default();
    let Some((id, draft)) = console.drafts.by_state(&state, owner) else {
        return Ok((
            StatusCode::BAD_REQUEST,
            page::message_page(
                "Authorization not recognised",
                "This answer from Salesforce does not belong to a connection being added by you (it may have expired after an hour). Start again from Data Connections › Add data connection.",
            ),
        )
            .into_response());
    };
    let back_to_step = |step: u8, notice: String, errors: Vec<(String, String)>| {
        let entered = Entered {
            name: draft.name.clone(),
            completed: true,
            scope: draft.scope.as_ref().map(|(s, _)| s.name().to_owned()).unwrap_or_default(),
            my_domain: draft.my_domain.clone(),
            errors,
            notice: Some(notice),
        };
        (StatusCode::BAD_REQUEST, render(&console, &frame, step, Some((&id, &draft)), entered)).into_response()
    };
    if draft.reauthorize.is_some() {
        return reauthorized(&console, &frame, &signed, &id, &draft, &answer).await;
    }
    let (Some((start, login)), Some((scope, scope_lines))) = (&draft.pending, &draft.scope) else {
        return Err(ConsoleError::BadRequest("the draft has no sign-in in progress".into()));
    };
    if let Some(error) = &answer.error {
        let why = answer.error_description.as_deref().unwrap_or(error.as_str());
        let notice = if error == "access_denied" {
            format!(
                "Salesforce did not authorize the connection: access was denied at the consent page ({why}). Nothing was added. Authorize again and click Allow when you are ready."
            )
        } else {
            format!("Salesforce refused the sign-in: {why} ({error}). Nothing was added.")
        };
        return Ok(back_to_step(3, notice, Vec::new()));
    }
    let Some(code) = answer.code.as_deref() else {
        return Ok(back_to_step(
            3,
            "Salesforce's answer carried no authorization code. Authorize again.".into(),
            Vec::new(),
        ));
    };
    let new = NewConnection {
        display_name: draft.name.clone(),
        scope: scope.clone(),
        scope_lines: scope_lines.clone(),
        corporate_cidrs: super::admin::corporate_ranges(&console).await?,
    };
    let app = console.fleet.app().clone();
    let record = match crate::connector::finish_authorization(&*console.store, &app, login, &new, start, &state, code)
        .await
    {
        Ok(record) => record,
        Err(crate::connector::Error::Scope(e)) => {
            let file = draft.file_name.clone().unwrap_or_else(|| "the uploaded file".into());
            return Ok(back_to_step(
                    2,
                    "The org does not have everything the uploaded list names. Nothing was added: correct the file and upload it again."
                        .into(),
                    file_errors(&file, &e),
                ));
        }
        Err(crate::connector::Error::Store(e)) => return Err(e.into()),
        Err(e) => {
            let problem = e.problem();
            return Ok(back_to_step(
                3,
                format!("The connection could not be added: {} Nothing was added.", problem.message),
                Vec::new(),
            ));
        }
    };
    console.drafts.remove(&id);
    let (who, key) = (actor(&signed.0.account), record.id.clone());
    db(&console, move |s| s.audit(&who, "connection.add", &key)).await?;
    // Initializing now; the connector turns it Monitoring (or Error, with the cause).
    let _ = console.fleet.start(&record).await;
    Ok(Redirect::to(&format!("/admin/connections/{}?done=added", record.id)).into_response())
}

/// The checklist of what must be done in Salesforce first.
fn prerequisites(callback: &str) -> Markup {
    html! {
        ol.checklist {
            li {
                strong { "Edition and licence. " }
                "Enterprise, Unlimited or Performance Edition with Salesforce Shield or the Event Monitoring add-on (real-time event streams need it)."
            }
            li {
                strong { "Event Manager. " }
                "In Setup › Event Manager, for each of " strong { "Login Event" } ", " strong { "Logout Event" } " and " strong { "Report Event" }
                ": " strong { "Enable Streaming" } " and " strong { "Enable Storing" } " (storing lets Tripline recover anything a stream lost)."
            }
            li {
                strong { "A profile or permission set for the service account " } "with: "
                code { "API Enabled" } ", " code { "View Setup and Configuration" } ", " code { "Customize Application" } " (to read Event Manager), "
                code { "View Real-Time Event Monitoring Data" } " and " code { "View All Users" } "."
            }
            li {
                strong { "A service-account user " } "(one Salesforce licence) with that profile, used only by Tripline. Its sign-in authorizes the connection in step 3."
            }
            li {
                strong { "A connected app " } "(self-hosted Tripline) with OAuth enabled, scopes "
                code { "Manage user data via APIs (api)" } " and " code { "Perform requests at any time (refresh_token, offline_access)" }
                ", PKCE required, and this callback URL:"
                div.copy { code #callback-url { (callback) } }
                "Give its consumer key and secret to " code { "tripline serve" } " (" code { "--salesforce-client-id" } ", " code { "--salesforce-client-secret" } ")."
            }
        }
    }
}

fn steps_header(step: u8) -> Markup {
    let labels = ["Connection", "Users to monitor", "Authorize"];
    html! {
        ol.steps aria-label="Steps" {
            @for (i, label) in labels.iter().enumerate() {
                @let n = i as u8 + 1;
                li.done[n < step] aria-current=[(n == step).then_some("step")] { "Step " (n) ": " (label) }
            }
        }
    }
}

fn error_summary(entered: &Entered) -> Markup {
    html! {
        @if !entered.errors.is_empty() {
            div.errors role="alert" #errors {
                "Please correct the following:"
                ul { @for (_, m) in &entered.errors { li { (m) } } }
            }
        }
    }
}

fn render(console: &Console, frame: &Frame, step: u8, draft: Option<(&str, &Draft)>, entered: Entered) -> Markup {
    let draft_id = draft.map(|(id, _)| id).unwrap_or_default();
    let invalid = |field: &str| entered.error(field).map(|_| "true");
    let body = html! {
        div.crumbs { a href="/admin/connections" { "Data Connections" } " › Add data connection" }
        h1 { "Add data connection" }
        (steps_header(step))
        @if let Some(notice) = &entered.notice {
            div.notice.bad role="alert" { (notice) }
        }
        (error_summary(&entered))
        form.stack method="post" action="/admin/connections/new" enctype="multipart/form-data" novalidate {
            (frame.csrf_field())
            input type="hidden" name="draft" value=(draft_id);
            input type="hidden" name="step" value=(step);
            @match step {
                1 => {
                    fieldset {
                        legend { "Data connection" }
                        div.choice {
                            input #svc type="radio" name="service" value="salesforce" checked disabled;
                            label for="svc" { "Salesforce" div.hint { "Business tools · report downloads from Login, Logout and Report event streams" } }
                        }
                    }
                    div {
                        label for="name" { "Display name" }
                        input #name type="text" name="name" value=(entered.name) maxlength="100" required aria-invalid=[invalid("name")]
                            aria-describedby="name-hint";
                        div.hint #name-hint { "Unique among your data connections, e.g. “Salesforce production”." }
                        @if let Some(m) = entered.error("name") { div.field-error { (m) } }
                    }
                    section {
                        h2 { "Complete these steps in Salesforce" }
                        (prerequisites(&console.fleet.app().redirect_uri))
                        div.choice {
                            input #completed type="checkbox" name="completed" value="yes" checked[entered.completed] aria-invalid=[invalid("completed")];
                            label for="completed" { "I've completed these steps" }
                        }
                        @if let Some(m) = entered.error("completed") { div.field-error { (m) } }
                    }
                    div.actions {
                        button.primary type="submit" data-requires="completed" { "Continue" }
                        a.button href="/admin/connections" { "Cancel" }
                    }
                }
                2 => {
                    fieldset {
                        legend { "Which users to monitor" }
                        p.hint { "In every case only users who hold the Export Reports permission are monitored." }
                        @for (value, label, hint) in [
                            ("all", "All users", "Everyone with Export Reports."),
                            ("users", "Specific users", "Upload a CSV with a header Username (or Email) and one user per line."),
                            ("groups", "Specific groups", "Upload a CSV with a header Group (name, developer name or id) and one public group per line; nested groups count."),
                        ] {
                            div.choice {
                                input id={ "scope-" (value) } type="radio" name="scope" value=(value) checked[entered.scope == value || (entered.scope.is_empty() && value == "all")];
                                label for={ "scope-" (value) } { (label) div.hint { (hint) } }
                            }
                        }
                        @if let Some(m) = entered.error("scope") { div.field-error { (m) } }
                    }
                    div {
                        label for="file" { "Upload .CSV file" }
                        input #file type="file" name="file" accept=".csv,text/csv" aria-invalid=[invalid("file")];
                        @if let Some(name) = draft.and_then(|(_, d)| d.file_name.as_deref()) {
                            div.hint { "Uploaded: " (name) ". Upload another file to replace it." }
                        }
                        @for (f, m) in &entered.errors { @if f == "file" { div.field-error { (m) } } }
                    }
                    div.actions {
                        button.primary type="submit" { "Continue" }
                        a.button href={ "/admin/connections/new?draft=" (draft_id) "&step=1" } { "Back" }
                    }
                }
                _ => {
                    div {
                        label for="my_domain" { "Salesforce My Domain URL (optional)" }
                        input #my_domain type="url" name="my_domain" value=(entered.my_domain)
                            placeholder="https://yourcompany.my.salesforce.com" aria-invalid=[invalid("my_domain")];
                        div.hint { "The address your org signs in at, with its suffix. Leave blank to use login.salesforce.com." }
                        @if let Some(m) = entered.error("my_domain") { div.field-error { (m) } }
                    }
                    div.notice {
                        "Next, Salesforce's sign-in page opens. Sign in as the " strong { "service account" }
                        ", review the access Tripline asks for, and click " strong { "Allow" } ". You come back here; the connection then scans the org and starts monitoring."
                    }
                    div.actions {
                        button.primary type="submit" { "Authorize in Salesforce" }
                        a.button href={ "/admin/connections/new?draft=" (draft_id) "&step=2" } { "Back" }
                    }
                }
            }
        }
    };
    page::shell(frame, Nav::Connections, "Add data connection", body)
}

fn reauthorize_page(
    frame: &Frame,
    record: &crate::connection::ConnectionRecord,
    my_domain: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        div.crumbs { a href="/admin/connections" { "Data Connections" } " › " a href={ "/admin/connections/" (record.id) } { (record.display_name) } " › Authorize again" }
        h1 { "Authorize “" (record.display_name) "” again" }
        p { "Sign in as the service account of org " code { (record.org_id.as_str()) } " and click Allow. The connection keeps its history and resumes from where it stopped." }
        @if let Some(n) = notice { div.notice.bad role="alert" { (n) } }
        form.stack method="post" action={ "/admin/connections/" (record.id) "/reauthorize" } {
            (frame.csrf_field())
            div {
                label for="my_domain" { "Salesforce My Domain URL (optional)" }
                input #my_domain type="url" name="my_domain" value=(my_domain) aria-invalid=[error.map(|_| "true")];
                @if let Some(m) = error { div.field-error { (m) } }
            }
            div.actions {
                button.primary type="submit" { "Authorize in Salesforce" }
                a.button href={ "/admin/connections/" (record.id) } { "Cancel" }
            }
        }
    };
    page::shell(frame, Nav::Connections, "Authorize again", body)
}

pub(crate) async fn reauthorize_start_page(
    State(console): State<Console>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Markup, ConsoleError> {
    let frame = Frame::load(&console, &signed).await?;
    let record = db(&console, move |s| s.connection(&id)).await?;
    Ok(reauthorize_page(&frame, &record, &record.login_url, None, None))
}

pub(crate) async fn reauthorize_start(
    State(console): State<Console>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ConsoleError> {
    let form = super::FormData::parse(&body, &["my_domain"])?;
    let frame = Frame::load(&console, &signed).await?;
    let key = id.clone();
    let record = db(&console, move |s| s.connection(&key)).await?;
    let my_domain = form.text("my_domain").trim().to_owned();
    let login = if my_domain.is_empty() {
        Ok(LoginHost::production())
    } else {
        LoginHost::parse(&my_domain, &console.fleet.app().allowed_origins).map_err(|e| e.to_string())
    };
    let login = match login {
        Ok(l) => l,
        Err(m) => {
            return Ok((StatusCode::BAD_REQUEST, reauthorize_page(&frame, &record, &my_domain, None, Some(&m)))
                .into_response());
        }
    };
    let start = console.fleet.app().oauth(login.clone(), reqwest::Client::new()).start(MONITORING_SCOPE);
    let to = start.url.clone();
    let draft = Draft {
        owner: signed.0.account.id,
        created: Instant::now(),
        name: record.display_name.clone(),
        scope: None,
        file_name: None,
        my_domain,
        pending: Some((start, login)),
        reauthorize: Some(id),
    };
    console.drafts.put(&salesforce::oauth::random_token(12), draft);
    Ok(Redirect::to(&to).into_response())
}

/// The callback of a reauthorization (`draft.reauthorize` names the connection):
/// Deny and failures go back to its page.
async fn reauthorized(
    console: &Console,
    frame: &Frame,
    signed: &Signed,
    draft_id: &str,
    draft: &Draft,
    answer: &Callback,
) -> Result<Response, ConsoleError> {
    let connection = draft.reauthorize.as_deref().unwrap_or_default();
    let state = answer.state.as_deref().unwrap_or_default();
    let key = connection.to_owned();
    let record = db(console, move |s| s.connection(&key)).await?;
    let failed = |message: String| {
        (StatusCode::BAD_REQUEST, reauthorize_page(frame, &record, &draft.my_domain, Some(&message), None))
            .into_response()
    };
    if let Some(error) = &answer.error {
        let why = answer.error_description.as_deref().unwrap_or(error.as_str());
        return Ok(failed(format!("Salesforce did not authorize the connection ({why}). Nothing changed.")));
    }
    let (Some((start, login)), Some(code)) = (&draft.pending, answer.code.as_deref()) else {
        return Ok(failed("Salesforce's answer carried no authorization code. Authorize again.".into()));
    };
    let app = console.fleet.app().clone();
    let who = actor(&signed.0.account);
    let answer = crate::connector::authorize::SignIn { login, start, state, code };
    match crate::connector::finish_reauthorization(&*console.store, &app, connection, answer, &who).await {
        Ok(()) => {}
        Err(crate::connector::Error::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(failed(format!("{} Nothing changed.", e.problem().message))),
    }
    console.drafts.remove(draft_id);
    // Restarted with the new token, from its checkpoints.
    super::restart(console, connection).await?;
    Ok(Redirect::to(&format!("/admin/connections/{connection}?done=authorized+again")).into_response())
}
