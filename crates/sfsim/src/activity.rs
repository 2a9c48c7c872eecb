//! Simulated people: they log in, run and export reports (large exports in chunks that
//! share an ExecutionIdentifier), refresh dashboards and log out. A few export heavily,
//! some work off-hours or from outside the corporate ranges. Deterministic per seed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sfwire::events::{LoginEventStream, LogoutEventStream, ReportEventStream};
use sfwire::id::SfId;

use crate::clock::now_ms;
use crate::names;
use crate::org::{EventType, Org, Report};
use crate::rng::Rng;
use crate::sim::{Sim, encode};

/// Rows per event of a chunked export.
pub const CHUNK_ROWS: u64 = 10_000;
/// The org's corporate egress ranges; sessions from elsewhere look unmanaged.
pub const CORPORATE_CIDRS: [&str; 2] = ["10.20.0.0/16", "198.51.100.0/24"];

/// A user's live Salesforce UI session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSession {
    pub session_key: String,
    pub login_key: String,
    pub source_ip: String,
    pub browser: String,
    pub platform: String,
    pub city: usize,
    pub login_ms: i64,
}

struct State {
    rng: Rng,
    sessions: HashMap<SfId, UserSession>,
    paused: bool,
    rate: f64,
    heavy: Vec<SfId>,
}

pub struct People(Mutex<State>);

/// What to export (control API and activity).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct ExportRequest {
    pub report_id: Option<String>,
    pub rows: Option<u64>,
    pub operation: Option<String>,
    pub file_format: Option<String>,
    pub source_ip: Option<String>,
}

/// What an export published.
#[derive(Debug, serde::Serialize)]
pub struct ExportOutcome {
    pub event_identifiers: Vec<String>,
    /// Streamed or stored by the org (false without the Event Monitoring licence, or
    /// with both switched off in Event Manager: then no one can know of it).
    pub recorded: bool,
    pub execution_identifier: String,
    pub report_id: String,
    pub rows: u64,
}

fn key(rng: &mut Rng) -> String {
    rng.token(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 16)
}

fn pick_ip(rng: &mut Rng) -> String {
    if rng.chance(0.8) {
        if rng.chance(0.7) {
            format!("10.20.{}.{}", rng.below(256), 1 + rng.below(254))
        } else {
            format!("198.51.100.{}", 1 + rng.below(254))
        }
    } else {
        // Home broadband, hotels, phones: outside the corporate ranges.
        let first = *rng.pick(&[24u64, 73, 81, 92, 109, 176, 203]);
        format!("{first}.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254))
    }
}

fn new_session(rng: &mut Rng, ip: Option<String>, at: i64) -> UserSession {
    UserSession {
        session_key: key(rng),
        login_key: key(rng),
        source_ip: ip.unwrap_or_else(|| pick_ip(rng)),
        browser: (*rng.pick(names::BROWSERS)).to_owned(),
        platform: (*rng.pick(names::PLATFORMS)).to_owned(),
        city: rng.below(names::CITIES.len() as u64) as usize,
        login_ms: at,
    }
}

impl People {
    /// Some people are already signed in when the org starts (no login event seen).
    pub fn new(org: &Org, seed: u64) -> People {
        let mut rng = Rng::derive(seed, "activity");
        let now = now_ms();
        let mut sessions = HashMap::new();
        let users: Vec<SfId> = org.user_ids().into_iter().filter(|u| u != &org.service_user).collect();
        for user in &users {
            if org.user_can_sign_in(user) && rng.chance(0.2) {
                let at = now - rng.below(4 * 3_600_000) as i64;
                sessions.insert(user.clone(), new_session(&mut rng, None, at));
            }
        }
        let exporters: Vec<SfId> =
            users.iter().filter(|u| org.user_has_permission(u, "PermissionsExportReport", now)).cloned().collect();
        let heavy = (0..3.min(exporters.len())).map(|_| rng.pick(&exporters).clone()).collect();
        People(Mutex::new(State { rng, sessions, paused: false, rate: 0.0, heavy }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session(&self, user: &SfId) -> Option<UserSession> {
        self.state().sessions.get(user).cloned()
    }

    pub fn logged_in(&self) -> usize {
        self.state().sessions.len()
    }

    pub fn set_paused(&self, paused: bool) {
        self.state().paused = paused;
    }

    pub fn set_rate(&self, rate: f64) {
        self.state().rate = rate.max(0.0);
    }

    pub fn status(&self) -> (bool, f64) {
        let s = self.state();
        (s.paused, s.rate)
    }

    /// Signs a user in and publishes the LoginEventStream event.
    pub fn login(&self, sim: &Sim, user: &SfId, ip: Option<String>) -> Result<(UserSession, Option<String>), String> {
        let (username, can) = {
            let org = sim.org();
            (org.username(user), org.user_can_sign_in(user))
        };
        if username.is_empty() {
            return Err(format!("no user {user}"));
        }
        let now = now_ms();
        let (event, session) = {
            let mut s = self.state();
            let session = new_session(&mut s.rng, ip, now);
            let (city, country, iso, lat, lon) = names::CITIES[session.city];
            let event = LoginEventStream {
                CreatedDate: now,
                CreatedById: user.to_string(),
                EventDate: Some(now),
                EventIdentifier: Some(s.rng.uuid()),
                EventUuid: Some(s.rng.uuid()),
                UserId: Some(user.to_string()),
                Username: Some(username),
                UserType: Some("Standard".into()),
                SessionKey: can.then(|| session.session_key.clone()),
                LoginKey: can.then(|| session.login_key.clone()),
                SessionLevel: Some("STANDARD".into()),
                SourceIp: Some(session.source_ip.clone()),
                Status: Some(if can { "Success" } else { "User is Frozen or Inactive" }.into()),
                LoginType: Some("Application".into()),
                LoginUrl: Some(sim.base_url.trim_start_matches("http://").trim_start_matches("https://").to_owned()),
                Application: Some("Browser".into()),
                Browser: Some(session.browser.clone()),
                Platform: Some(session.platform.clone()),
                City: Some(city.into()),
                Country: Some(country.into()),
                CountryIso: Some(iso.into()),
                LoginLatitude: Some(lat),
                LoginLongitude: Some(lon),
                PolicyOutcome: Some("NoAction".into()),
                ..Default::default()
            };
            if can {
                s.sessions.insert(user.clone(), session.clone());
            }
            (event, session)
        };
        let id = sim.emit_login(event);
        if can { Ok((session, id)) } else { Err(format!("user {user} is inactive or frozen: login failed")) }
    }

    /// Signs a user out (publishing LogoutEventStream). Ok(None) if not signed in.
    pub fn logout(&self, sim: &Sim, user: &SfId) -> Option<String> {
        let username = sim.org().username(user);
        let (session, event_id, uuid) = {
            let mut s = self.state();
            let session = s.sessions.remove(user)?;
            let (a, b) = (s.rng.uuid(), s.rng.uuid());
            (session, a, b)
        };
        let now = now_ms();
        sim.emit_logout(LogoutEventStream {
            CreatedDate: now,
            CreatedById: user.to_string(),
            EventDate: Some(now),
            EventIdentifier: Some(event_id),
            EventUuid: Some(uuid),
            UserId: Some(user.to_string()),
            Username: Some(username),
            SessionKey: Some(session.session_key),
            LoginKey: Some(session.login_key),
            SessionLevel: Some("STANDARD".into()),
            SourceIp: Some(session.source_ip),
        })
    }

    /// A user runs or exports a report. Exports larger than [`CHUNK_ROWS`] arrive as
    /// several events sharing ExecutionIdentifier.
    pub fn export(&self, sim: &Sim, user: &SfId, request: &ExportRequest) -> Result<ExportOutcome, String> {
        let operation = request.operation.clone().unwrap_or_else(|| "ReportExported".into());
        let (username, report) = {
            let org = sim.org();
            let username = org.username(user);
            if username.is_empty() {
                return Err(format!("no user {user}"));
            }
            let report = match &request.report_id {
                Some(id) => org.report(id).cloned().ok_or_else(|| format!("no report {id}"))?,
                None => {
                    let mut s = self.state();
                    s.rng.pick(&org.reports).clone()
                }
            };
            (username, report)
        };
        let now = now_ms();
        let events = {
            let mut s = self.state();
            let session = s.sessions.get(user).cloned();
            let rows = request.rows.unwrap_or_else(|| 10 + s.rng.below(3000));
            let mut session = session;
            if let (Some(ip), Some(sess)) = (&request.source_ip, session.as_mut()) {
                sess.source_ip = ip.clone();
            }
            let spec = ReportSpec {
                user,
                username: &username,
                session: session.as_ref(),
                report: &report,
                operation: &operation,
                rows,
                file_format: request.file_format.as_deref(),
                source_ip: request.source_ip.as_deref(),
                at: now,
            };
            report_events(&mut s.rng, &spec)
        };
        let rows = events.first().and_then(|e| e.RowsProcessed).unwrap_or_default() as u64;
        let execution_identifier = events.first().and_then(|e| e.ExecutionIdentifier.clone()).unwrap_or_default();
        let (event_identifiers, recorded) = sim.emit_report(events);
        Ok(ExportOutcome { event_identifiers, recorded, execution_identifier, report_id: report.id.to_string(), rows })
    }

    /// One random action of the simulated workforce.
    fn act(&self, sim: &Sim) {
        enum Action {
            Login(SfId),
            Logout(SfId),
            Report(SfId, ExportRequest),
            Nothing,
        }
        let action = {
            let org = sim.org();
            let mut s = self.state();
            let roll = s.rng.unit();
            let signed_in: Vec<SfId> = s.sessions.keys().cloned().collect();
            if signed_in.len() < 5 || roll < 0.12 {
                let users = org.user_ids();
                let user = s.rng.pick(&users).clone();
                if user == org.service_user || s.sessions.contains_key(&user) {
                    Action::Nothing
                } else {
                    Action::Login(user)
                }
            } else if roll < 0.2 {
                Action::Logout(s.rng.pick(&signed_in).clone())
            } else {
                // Heavy exporters are a small share of people and a large share of exports.
                let heavy = !s.heavy.is_empty() && s.rng.chance(0.25);
                let pool = if heavy { s.heavy.clone() } else { signed_in };
                let user = s.rng.pick(&pool).clone();
                let can_export = org.user_has_permission(&user, "PermissionsExportReport", now_ms());
                let op_roll = s.rng.unit();
                let operation = match op_roll {
                    r if r < 0.40 => "ReportRunFromLightning",
                    r if r < 0.48 => "ReportRunFromClassic",
                    r if r < 0.53 => "ReportRunFromRestApi",
                    r if r < 0.60 => "ReportPreviewed",
                    r if r < 0.65 => "DashboardComponentUpdated",
                    r if r < 0.90 => "ReportExported",
                    r if r < 0.96 => "ReportExportedAsynchronously",
                    _ => "ReportExportedUsingExcelConnector",
                };
                let export = sfwire::pubsub::is_export_operation(operation);
                if export && !can_export {
                    Action::Nothing
                } else {
                    let rows = if heavy && export { 5_000 + s.rng.below(120_000) } else { 5 + s.rng.below(2_500) };
                    if !s.sessions.contains_key(&user) && operation != "ReportExportedAsynchronously" {
                        Action::Login(user)
                    } else {
                        Action::Report(
                            user,
                            ExportRequest { rows: Some(rows), operation: Some(operation.into()), ..Default::default() },
                        )
                    }
                }
            }
        };
        match action {
            Action::Login(u) => {
                let _ = self.login(sim, &u, None);
            }
            Action::Logout(u) => {
                self.logout(sim, &u);
            }
            Action::Report(u, r) => {
                let _ = self.export(sim, &u, &r);
            }
            Action::Nothing => {}
        }
    }
}

/// Everything a report event needs.
pub struct ReportSpec<'a> {
    pub user: &'a SfId,
    pub username: &'a str,
    pub session: Option<&'a UserSession>,
    pub report: &'a Report,
    pub operation: &'a str,
    pub rows: u64,
    pub file_format: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub at: i64,
}

/// The events of one report execution: one, or one per chunk for large exports.
pub fn report_events(rng: &mut Rng, spec: &ReportSpec<'_>) -> Vec<ReportEventStream> {
    let export = sfwire::pubsub::is_export_operation(spec.operation);
    // Scheduled, asynchronous and dashboard runs carry no UI session.
    let sessionless = matches!(spec.operation, "ReportExportedAsynchronously" | "DashboardComponentUpdated");
    let session = if sessionless { None } else { spec.session };
    let chunks = if export { spec.rows.div_ceil(CHUNK_ROWS).max(1) } else { 1 };
    let execution = rng.uuid();
    let file_format = spec
        .file_format
        .map(str::to_owned)
        .or_else(|| export.then(|| if rng.chance(0.6) { "CSV" } else { "Excel" }.to_owned()));
    let source_ip = spec.source_ip.map(str::to_owned).or_else(|| session.map(|s| s.source_ip.clone()));
    let dashboard = spec.operation == "DashboardComponentUpdated";
    let columns = spec.report.columns.join(",");
    (0..chunks)
        .map(|i| {
            let rows_here = if export { (spec.rows - i * CHUNK_ROWS).min(CHUNK_ROWS) } else { spec.rows };
            let at = spec.at + i as i64;
            ReportEventStream {
                CreatedDate: at,
                CreatedById: spec.user.to_string(),
                EventDate: Some(at),
                EventIdentifier: Some(rng.uuid()),
                EventUuid: Some(rng.uuid()),
                UserId: Some(spec.user.to_string()),
                Username: Some(spec.username.to_owned()),
                SessionKey: session.map(|s| s.session_key.clone()),
                LoginKey: session.map(|s| s.login_key.clone()),
                SessionLevel: Some("STANDARD".into()),
                SourceIp: source_ip.clone(),
                Operation: Some(spec.operation.to_owned()),
                ReportId: Some(spec.report.id.to_string()),
                Name: Some(spec.report.name.clone()),
                Description: Some(spec.report.description.clone()),
                OwnerId: Some(spec.report.owner_id.to_string()),
                Scope: Some(spec.report.scope.clone()),
                Format: Some(spec.report.format.clone()),
                ExportFileFormat: file_format.clone(),
                RowsProcessed: Some(spec.rows as f64),
                NumberOfColumns: Some(spec.report.columns.len() as i64),
                QueriedEntities: Some(spec.report.queried_entities.clone()),
                ColumnHeaders: Some(columns.clone()),
                GroupedColumnHeaders: None,
                DisplayedFieldEntities: Some(spec.report.queried_entities.clone()),
                Records: Some(format!("{{\"totalSize\":{rows_here},\"done\":{}}}", i + 1 == chunks)),
                ExecutionIdentifier: Some(execution.clone()),
                Sequence: Some(i as i32 + 1),
                IsScheduled: Some(spec.operation == "ReportExportedAsynchronously" && rng.chance(0.5)),
                EventSource: Some(
                    match spec.operation {
                        "ReportRunFromClassic" => "Classic",
                        "ReportRunFromRestApi" | "ReportExportedUsingExcelConnector" => "API",
                        _ => "Lightning",
                    }
                    .into(),
                ),
                DashboardId: dashboard.then(|| "01Z000000000001AAA".to_owned()),
                DashboardName: dashboard.then(|| "Sales Leadership Dashboard".to_owned()),
                PolicyOutcome: Some("NoAction".into()),
                EvaluationTime: Some(0.0),
                ..Default::default()
            }
        })
        .collect()
}

/// Publishes `count` retained report events spread over the last `span_ms`, as fast as
/// possible (benchmarks and catch-up tests). Returns how many were published. As in a
/// real org, anyone active runs reports, and only holders of Export Reports export.
pub fn preload(sim: &Sim, count: usize, span_ms: i64, seed: u64) -> usize {
    let mut rng = Rng::derive(seed, "preload");
    let now = now_ms();
    let (people, exporters, reports, store) = {
        let org = sim.org();
        let named = |u: SfId| {
            let name = org.username(&u);
            (u, name)
        };
        let active: Vec<SfId> = org.user_ids().into_iter().filter(|u| org.user_active(u)).collect();
        let exporters: Vec<(SfId, String)> = active
            .iter()
            .filter(|u| org.user_has_permission(u, "PermissionsExportReport", now))
            .cloned()
            .map(named)
            .collect();
        let people: Vec<(SfId, String)> = active.into_iter().map(named).collect();
        (people, exporters, org.reports.clone(), org.settings.storing(EventType::Report))
    };
    if people.is_empty() || exporters.is_empty() || reports.is_empty() {
        return 0;
    }
    let sessions: Vec<UserSession> = (0..64).map(|_| new_session(&mut rng, None, now - span_ms)).collect();
    let topic = sim.topic(EventType::Report);
    let mut published = 0;
    const BATCH: usize = 50_000;
    while published < count {
        let n = BATCH.min(count - published);
        let mut batch = Vec::with_capacity(n);
        let mut stored = Vec::new();
        for i in 0..n {
            let k = (published + i) as i64;
            let at = now - span_ms + k * span_ms / count.max(1) as i64;
            let operation = if rng.chance(0.4) { "ReportExported" } else { "ReportRunFromLightning" };
            let (user, username) = if operation == "ReportExported" { rng.pick(&exporters) } else { rng.pick(&people) };
            let spec = ReportSpec {
                user,
                username,
                session: Some(rng.pick(&sessions)),
                report: rng.pick(&reports),
                operation,
                rows: 1 + rng.below(5_000),
                file_format: Some("CSV"),
                source_ip: None,
                at,
            };
            // One event per execution here (rows ≤ CHUNK_ROWS), so counts stay exact.
            for event in report_events(&mut rng, &spec) {
                batch.push((event.EventUuid.clone().unwrap_or_default(), encode(&event), at));
                if store {
                    stored.push(Arc::new(event));
                }
            }
        }
        published += batch.len();
        topic.publish(batch);
        if store {
            let mut org = sim.org();
            for e in stored {
                org.store_report_event(e);
            }
        }
    }
    published
}

/// Drives the simulated workforce at the configured rate.
pub fn spawn(sim: Arc<Sim>, people: Arc<People>) {
    people.set_rate(sim.config.activity_rate);
    tokio::spawn(async move {
        let mut carry = 0.0;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let (paused, rate) = people.status();
            if paused || rate <= 0.0 {
                continue;
            }
            carry += rate * 0.05;
            while carry >= 1.0 {
                carry -= 1.0;
                people.act(&sim);
            }
        }
    });
}
