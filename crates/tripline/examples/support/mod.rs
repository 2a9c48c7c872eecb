//! What the tripline benchmark programs share (each uses part of it).
#![allow(dead_code)]

/// The process's peak resident memory (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

/// The process's anonymous resident memory now (RssAnon: the heap, not mapped files),
/// in MB.
pub fn anon_rss_mb() -> f64 {
    status_kb("RssAnon:") / 1024.0
}

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .unwrap_or(0.0)
}

/// CPU time this process has used (user and system), in seconds.
pub fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz
    // on Linux); the command name before them is in parentheses and may hold spaces,
    // and the state after it is a letter: of the numbers after the name, they are the
    // 11th and 12th.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after_name.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    fields.get(10).zip(fields.get(11)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// A connection named `name` monitoring every Export Reports holder of the emulated
/// org, authorized through its sign-in pages and stored in `store`.
pub async fn connect(
    store: &dyn tripline::store::Store,
    app: &tripline::connector::SalesforceApp,
    org: &sfsim::Running,
    name: &str,
) -> anyhow::Result<tripline::connection::ConnectionRecord> {
    let new = tripline::connector::NewConnection {
        display_name: name.into(),
        scope: tripline::connection::ScopeMode::All,
        scope_lines: None,
        corporate_cidrs: vec!["10.20.0.0/16".into()],
    };
    Ok(tripline::emulated::authorize(store, app, org, &new).await?)
}

/// The callback registered on the emulated org's connected app (never called: the
/// benchmarks authorize without a browser).
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// An emulated org of 500 people whose ReportEventStream retains a preloaded backlog
/// (40% exports, all by holders of Export Reports; the stored ReportEvent object off),
/// with the app settings that reach it.
pub struct Backlog {
    pub org: sfsim::Running,
    pub app: tripline::connector::SalesforceApp,
    pub published: usize,
    /// The replay id of the last retained event.
    pub last: Vec<u8>,
}

pub async fn backlog(events: usize) -> anyhow::Result<Backlog> {
    let org =
        sfsim::start(sfsim::Config { users: 500, callback_urls: vec![CALLBACK.into()], ..Default::default() }).await?;
    org.sim.org().settings.set(sfsim::org::EventType::Report, None, Some(false));
    let sim = org.sim.clone();
    let published = tokio::task::spawn_blocking(move || sfsim::activity::preload(&sim, events, 3_600_000, 9)).await?;
    let app = tripline::emulated::app(&org, CALLBACK);
    let last = org.sim.topic(sfsim::org::EventType::Report).latest_replay().to_be_bytes().to_vec();
    Ok(Backlog { org, app, published, last })
}

impl Backlog {
    /// Has the connection's report checkpoint reached the last retained event?
    pub fn caught_up(&self, store: &dyn tripline::store::Store, connection: &str) -> anyhow::Result<bool> {
        Ok(store.checkpoint(connection, sfwire::pubsub::REPORT_TOPIC)?
            == Some(tripline::store::Checkpoint::At(self.last.clone())))
    }
}
