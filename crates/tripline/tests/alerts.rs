//! Alerts end to end: sfsim exports → file events → rules → alerts → messages at real
//! receivers on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{Scenario, id};
use serde_json::{Value, json};
use tripline::alerts::engine::backtest;
use tripline::alerts::notify::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use tripline::alerts::{AlertFilter, AlertState, AlertUpdate, Conditions, RuleDraft, Target, Threshold, WebhookBody};
use tripline::connection::ScopeMode;
use tripline::risk::Severity;

const SECRET: &str = "a-signing-secret-of-some-length";

/// A webhook receiver: checks each request's signature, answers 503 to the first
/// `fail_first` requests (and while `down`), and keeps what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
    refused: Arc<Mutex<Vec<String>>>,
    fail_first: Arc<Mutex<usize>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move { me.receive(&headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn receive(&self, headers: &HeaderMap, body: &str) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let key = header(IDEMPOTENCY_HEADER);
        let timestamp: i64 = header(TIMESTAMP_HEADER).parse().unwrap_or_default();
        let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() < 300;
        if !fresh || header(SIGNATURE_HEADER) != signature(SECRET, timestamp, body) {
            return StatusCode::UNAUTHORIZED;
        }
        let mut fail = self.fail_first.lock().expect("lock");
        if *fail > 0 || self.down.load(std::sync::atomic::Ordering::SeqCst) {
            *fail = fail.saturating_sub(1);
            self.refused.lock().expect("lock").push(key);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        self.accepted.lock().expect("lock").push((key, serde_json::from_str(body).expect("a JSON body")));
        StatusCode::OK
    }

    fn accepted(&self) -> Vec<(String, Value)> {
        self.accepted.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, Value)> {
        for _ in 0..400 {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the receiver holds {:?}", self.accepted());
    }
}

fn draft(name: &str, conditions: Conditions, channels: Vec<i64>, suppress_minutes: u32) -> RuleDraft {
    RuleDraft {
        name: name.into(),
        description: String::new(),
        severity: Severity::High,
        conditions,
        channels,
        suppress_minutes,
    }
}

#[tokio::test]
async fn a_large_export_raises_one_alert_delivered_signed_once_through_a_failing_receiver() {
    let s = Scenario::new(40).await;
    let receiver = Receiver::default();
    *receiver.fail_first.lock().expect("lock") = 1;
    let url = receiver.clone().start().await;
    let record = s.connect("Acme", ScopeMode::All).await;
    let target = Target::Webhook { url, secret: SECRET.into(), body: WebhookBody::Json };
    let channel = s.store.save_channel(None, "SOC webhook", &target, true, "test").expect("channel");
    let big = Conditions { min_rows: Some(10_000), ..Default::default() };
    let rule = s.store.create_rule(&draft("Big exports", big, vec![channel.id], 60), "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;

    let exporters = s.exporters().await;
    let ann = id(&exporters[0]);
    s.export(&ann, json!({"rows": 25_000, "file_format": "Excel"})).await; // three chunks
    s.export(&ann, json!({"rows": 50, "file_format": "CSV"})).await; // below the rule
    let got = receiver.wait_for(1).await;
    let (key, body) = &got[0];
    assert_eq!(body["type"], "tripline.alert");
    assert_eq!(body["alert"]["rule"]["name"], "Big exports");
    assert_eq!(body["alert"]["events"], 1, "three chunks are one export");
    assert_eq!(body["alert"]["rows"], 25_000);
    assert_eq!(body["alert"]["user"]["id"], ann.as_str());
    assert_eq!(body["events"][0]["rows"], 25_000);
    assert_eq!(body["events"][0]["destination"], "unmonitored");
    let alert_id = body["alert"]["id"].as_str().expect("id").to_owned();
    assert_eq!(key, &format!("{alert_id}:{}", channel.id));
    assert_eq!(*receiver.refused.lock().expect("lock"), vec![key.clone()], "the first attempt was refused");

    // Within the suppression window: the alert grows, nothing more is sent.
    s.export(&ann, json!({"rows": 12_000})).await;
    for _ in 0..200 {
        if s.store.alert(&alert_id).expect("alert").expect("stored").0.events == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (alert, _) = s.store.alert(&alert_id).expect("alert").expect("stored");
    assert_eq!((alert.events, alert.rows), (2, 37_000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 1, "a grown alert is not sent again");
    let health = s.store.channel_health().expect("health");
    assert_eq!((health[&channel.id].delivered, health[&channel.id].pending), (1, 0));
    assert!(health[&channel.id].last_error.as_deref().is_some_and(|e| e.contains("503")));

    // Closed by an analyst: the next match opens a new alert, which is sent.
    let update = AlertUpdate {
        state: Some(AlertState::Benign),
        note: Some("expected quarterly pull".into()),
        ..Default::default()
    };
    s.store.update_alert(&alert_id, &update, "analyst").expect("triage");
    s.export(&ann, json!({"rows": 15_000})).await;
    let got = receiver.wait_for(2).await;
    assert_ne!(got[1].1["alert"]["id"], alert_id.as_str());
    let (all, total) = s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts");
    assert_eq!(total, 2);
    assert_eq!(all.iter().map(|a| a.events).sum::<i64>(), 3);

    // The back-test of the rule over the same events raises as many alerts (it knows
    // nothing of the analyst's close, which split the burst: 1 rather than 2).
    let events = s.store.events_between(0, i64::MAX, 0, 1_000).expect("events");
    assert_eq!(events.len(), 4);
    let rule = s.store.rule(rule.id).expect("rule");
    let result = backtest(&rule, &events);
    assert_eq!((result.matched, result.alerts, result.grown), (3, 1, 2));
    served.stop().await;
    let _ = record;
}

#[tokio::test]
async fn a_burst_of_exports_raises_one_threshold_alert_and_a_receiver_down_gets_it_after_a_restart() {
    let s = Scenario::new(40).await;
    let receiver = Receiver::default();
    receiver.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = receiver.clone().start().await;
    s.connect("Acme", ScopeMode::All).await;
    let target = Target::Webhook { url, secret: SECRET.into(), body: WebhookBody::Json };
    let channel = s.store.save_channel(None, "SIEM", &target, true, "test").expect("channel");
    let mass = Conditions {
        threshold: Some(Threshold { window_minutes: 60, exports: Some(2), rows: None }),
        ..Default::default()
    };
    let rule = s.store.create_rule(&draft("Mass export", mass, vec![channel.id], 60), "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;

    let exporters = s.exporters().await;
    let (ann, bob) = (id(&exporters[0]), id(&exporters[1]));
    for _ in 0..2 {
        s.export(&bob, json!({"rows": 10})).await;
    }
    for _ in 0..4 {
        s.export(&ann, json!({"rows": 10})).await;
    }
    s.wait_for("six exports", |e| e.len() == 6).await;
    let mut alerts = Vec::new();
    for _ in 0..200 {
        alerts = s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts").0;
        if alerts.first().is_some_and(|a| a.events == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].user_id, ann);
    assert_eq!(alerts[0].events, 4, "three raised it, the fourth grew it");
    // The receiver is down: the message waits in the outbox, through a restart.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(receiver.accepted().is_empty());
    assert!(s.store.channel_health().expect("health")[&channel.id].pending == 1);
    served.stop().await;
    receiver.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let served = s.serve().await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].1["alert"]["id"], alerts[0].id.as_str());
    assert_eq!(got[0].1["alert"]["events"], 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 1, "delivered once");
    // Nothing was evaluated twice across the restart.
    assert_eq!(s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts").1, 1);
    served.stop().await;
}

/// A certificate for `localhost` (and its PEM files, for the SMTP server).
struct Certificate {
    pem: String,
    der: rustls_pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    key_pem: String,
}

fn certificate() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    Certificate {
        pem: made.cert.pem(),
        der: made.cert.der().clone(),
        key_der: made.signing_key.serialize_der(),
        key_pem: made.signing_key.serialize_pem(),
    }
}

/// What a listener received, one message per entry.
type Lines = Arc<Mutex<Vec<String>>>;

/// Syslog listeners: UDP datagrams, and octet-counted frames over TCP and TLS.
async fn syslog_udp(received: Lines) -> u16 {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            received.lock().expect("lock").push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    port
}

async fn read_frames(mut stream: impl tokio::io::AsyncRead + Unpin, received: Lines) {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all).await;
    let mut rest = &all[..];
    while let Some(space) = rest.iter().position(|b| *b == b' ') {
        let len: usize = std::str::from_utf8(&rest[..space]).expect("length").parse().expect("octet count");
        let frame = &rest[space + 1..space + 1 + len];
        received.lock().expect("lock").push(String::from_utf8_lossy(frame).into_owned());
        rest = &rest[space + 1 + len..];
    }
}

async fn syslog_stream(received: Lines, tls: Option<&Certificate>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("tcp");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tls.map(|c| {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![c.der.clone()], rustls_pki_types::PrivateKeyDer::Pkcs8(c.key_der.clone().into()))
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (received, acceptor) = (received.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            read_frames(tls, received).await;
                        }
                    }
                    None => read_frames(tcp, received).await,
                }
            });
        }
    });
    port
}

/// The SMTP server (aiosmtpd, from scripts/python-requirements.txt) and its messages.
struct Smtp {
    child: std::process::Child,
    port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Smtp {
    fn start(dir: &std::path::Path, cert: &Certificate) -> Smtp {
        use std::io::BufRead;
        std::fs::write(dir.join("smtp.crt"), &cert.pem).expect("cert");
        std::fs::write(dir.join("smtp.key"), &cert.key_pem).expect("key");
        let python = std::env::var("TRIPLINE_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = std::process::Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/smtp_server.py"))
            .arg(dir.join("smtp.crt"))
            .arg(dir.join("smtp.key"))
            .args(["alerts", "smtp-password"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the SMTP server starts (scripts/test.sh installs aiosmtpd into target/pyenv)");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("text");
        let port = first.strip_prefix("PORT ").expect("PORT n").parse().expect("port");
        let messages: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = messages.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().expect("lock").push(serde_json::from_str(&line).expect("JSON"));
            }
        });
        Smtp { child, port, messages }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_alert_reaches_syslog_over_udp_tcp_and_tls_and_email_over_starttls() {
    use tripline::alerts::{SmtpSecurity, SyslogFormat, SyslogTransport};
    let s = Scenario::new(40).await;
    let cert = certificate();
    let smtp = Smtp::start(s.dir.path(), &cert);
    let (udp, tcp, tls): (Lines, Lines, Lines) = Default::default();
    let syslog =
        |port, transport, format, ca_pem| Target::Syslog { host: "localhost".into(), port, transport, format, ca_pem };
    let targets = [
        syslog(syslog_udp(udp.clone()).await, SyslogTransport::Udp, SyslogFormat::Rfc5424, None),
        syslog(syslog_stream(tcp.clone(), None).await, SyslogTransport::Tcp, SyslogFormat::Cef, None),
        syslog(
            syslog_stream(tls.clone(), Some(&cert)).await,
            SyslogTransport::Tls,
            SyslogFormat::Rfc5424,
            Some(cert.pem.clone()),
        ),
        Target::Email {
            host: "localhost".into(),
            port: smtp.port,
            security: SmtpSecurity::StartTls,
            username: Some("alerts".into()),
            password: Some("smtp-password".into()),
            from: "Tripline <tripline@example.com>".into(),
            to: vec!["soc@example.com".into()],
            ca_pem: Some(cert.pem.clone()),
        },
    ];
    let mut channels = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        assert!(target.problems().is_empty(), "{:?}", target.problems());
        channels.push(s.store.save_channel(None, &format!("channel {i}"), target, true, "test").expect("channel").id);
    }
    s.connect("Acme", ScopeMode::All).await;
    let big = Conditions { min_rows: Some(1_000), ..Default::default() };
    let rule = s.store.create_rule(&draft("Big | exports", big, channels.clone(), 60), "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;
    let exporters = s.exporters().await;
    let ann = &exporters[0];
    s.export(&id(ann), json!({"rows": 4_321, "source_ip": "198.51.100.7"})).await;
    let username = ann["username"].as_str().expect("username");

    wait_until("syslog over UDP", || !udp.lock().expect("lock").is_empty()).await;
    let line = udp.lock().expect("lock")[0].clone();
    assert!(line.starts_with("<35>1 "), "security/authorization, err (high): {line}");
    assert!(line.contains(" tripline - alert [tripline@32473 alert=\""), "{line}");
    assert!(line.contains(&format!("user=\"{username}\"")) && line.contains("rows=\"4321\""), "{line}");
    assert!(line.contains("rule=\"Big | exports\""), "{line}");

    wait_until("CEF over TCP", || !tcp.lock().expect("lock").is_empty()).await;
    let line = tcp.lock().expect("lock")[0].clone();
    assert!(line.contains("CEF:0|Tripline|Tripline|"), "{line}");
    assert!(line.contains("|Big \\| exports|8|"), "a pipe in a header field is escaped: {line}");
    assert!(line.contains(&format!("suser={username}")) && line.contains("src=198.51.100.7"), "{line}");
    assert!(line.contains("cn1Label=rows cn1=4321"), "{line}");

    wait_until("syslog over TLS", || !tls.lock().expect("lock").is_empty()).await;
    assert!(tls.lock().expect("lock")[0].contains(&format!("user=\"{username}\"")));

    wait_until("the email", || !smtp.messages.lock().expect("lock").is_empty()).await;
    let mail = smtp.messages.lock().expect("lock")[0].clone();
    assert_eq!(mail["tls"], true, "STARTTLS");
    assert_eq!(mail["login"], true, "authenticated");
    assert_eq!(mail["to"], json!(["soc@example.com"]));
    // Long headers are folded onto continuation lines.
    let data = mail["data"].as_str().expect("data").replace("\r\n ", " ").replace("\n ", " ");
    assert!(data.contains(&format!("Subject: [High] Big | exports: {username} (1 download, 4,321 rows)")), "{data}");
    assert!(data.contains("Message-ID: <"), "{data}");
    assert!(data.contains("4,321 rows of"), "{data}");

    wait_until("every delivery recorded", || {
        let health = s.store.channel_health().expect("health");
        channels.iter().all(|c| health.get(c).is_some_and(|h| h.delivered == 1))
    })
    .await;
    served.stop().await;
}

#[tokio::test]
async fn a_salesforce_policy_outcome_is_a_risk_indicator_that_a_recommended_rule_alerts_on() {
    use tripline::alerts::recommended::recommended;
    use tripline::risk::RiskIndicator;

    let s = Scenario::new(40).await;
    s.connect("Acme", ScopeMode::All).await;
    let draft = recommended().into_iter().find(|d| d.name.contains("Salesforce policy")).expect("recommended");
    let rule = s.store.create_rule(&draft, "test").expect("rule");
    s.store.set_rule_enabled(rule.id, true, "test").expect("enabled");
    let served = s.serve().await;
    let exporters = s.exporters().await;
    let (ann, bob) = (id(&exporters[0]), id(&exporters[1]));
    let block =
        s.control("/policies", json!({"name": "Block big exports", "min_rows": 50_000, "outcome": "Block"})).await;
    assert!(block["id"].as_str().is_some_and(|i| i.starts_with("0NI")), "{block}");
    s.control("/policies", json!({"name": "Watch Bob", "users": [bob], "outcome": "Notified"})).await;
    s.export(&ann, json!({"rows": 60_000})).await;
    s.export(&ann, json!({"rows": 10})).await;
    s.export(&bob, json!({"rows": 10})).await;
    let events = s.wait_for("three exports", |e| e.len() == 3).await;
    let blocked = events.iter().find(|e| e.rows == 60_000).expect("blocked");
    assert!(blocked.indicators.contains(&RiskIndicator::PolicyBlocked), "{:?}", blocked.indicators);
    let notified = events.iter().find(|e| e.user_id.as_str() == bob).expect("notified");
    assert!(notified.indicators.contains(&RiskIndicator::PolicyNotified), "{:?}", notified.indicators);
    let quiet = events.iter().find(|e| e.user_id.as_str() == ann && e.rows == 10).expect("quiet");
    assert!(
        !quiet.indicators.iter().any(|i| matches!(i, RiskIndicator::PolicyBlocked | RiskIndicator::PolicyNotified))
    );
    let mut alerts = Vec::new();
    for _ in 0..200 {
        alerts = s.store.alerts(&AlertFilter { limit: 10, ..Default::default() }).expect("alerts").0;
        if alerts.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut users: Vec<&str> = alerts.iter().map(|a| a.user_id.as_str()).collect();
    users.sort_unstable();
    let mut expected = vec![ann.as_str(), bob.as_str()];
    expected.sort_unstable();
    assert_eq!(users, expected);
    served.stop().await;
}
