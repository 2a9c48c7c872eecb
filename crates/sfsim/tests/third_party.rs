//! Independent, third-party clients work against sfsim unchanged: Python's
//! simple-salesforce (REST), and grpcio with Apache Avro (Pub/Sub). `scripts/test.sh`
//! installs them.

use std::process::Command;

/// An sfsim with HTTPS and TLS gRPC, and an access token for its service account.
async fn org_and_token(users: usize) -> (sfsim::Running, String, String) {
    let config = sfsim::Config {
        users,
        https_addr: Some(([127, 0, 0, 1], 0).into()),
        grpc_tls_addr: Some(([127, 0, 0, 1], 0).into()),
        callback_urls: vec!["http://127.0.0.1:9/cb".into()],
        ..sfsim::Config::default()
    };
    let org = sfsim::start(config).await.expect("sfsim");
    let http = format!("http://{}", org.http_addr);
    let (client_id, client_secret) = org.connected_app();
    let (user, password) = org.service_account();
    let authorize = format!(
        "{http}/services/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=api"
    );
    let code = sfsim::browser::sign_in_and_allow(&authorize, &user, &password).await.expect("sign in").code;
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{http}/services/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let instance = tokens["instance_url"].as_str().expect("instance_url").to_owned();
    assert!(instance.starts_with("https://localhost:"), "{instance}");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    (org, instance, token)
}

/// Runs a Python check script with `env`, plus the CA file; it must print "ok". The
/// interpreter is `TRIPLINE_PYTHON` (scripts/test.sh's virtual environment with the
/// pinned clients), else `python3`.
async fn python(org: &sfsim::Running, script: &'static str, env: Vec<(&'static str, String)>) {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("sfsim.pem");
    std::fs::write(&ca, &org.sim.tls_cert_pem).expect("CA file");
    let output = tokio::task::spawn_blocking({
        move || {
            Command::new(std::env::var("TRIPLINE_PYTHON").unwrap_or_else(|_| "python3".into()))
                .arg(script)
                .envs(env)
                .env("SFSIM_CA", &ca)
                // requests lets this variable override a session's own CA setting.
                .env("REQUESTS_CA_BUNDLE", &ca)
                .output()
                .expect("python3 runs")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stdout.trim() == "ok", "{script} failed:\n{stdout}\n{stderr}");
}

#[tokio::test]
async fn simple_salesforce_queries_pages_and_errors() {
    let (org, instance, token) = org_and_token(1800).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/simple_salesforce_check.py");
    python(&org, script, vec![("SFSIM_URL", instance), ("SFSIM_TOKEN", token)]).await;
}

#[tokio::test]
async fn grpcio_and_avro_subscribe_over_tls() {
    let (org, instance, token) = org_and_token(40).await;
    let user = {
        let o = org.sim.org();
        let now = sfsim::now_ms();
        o.user_ids()
            .into_iter()
            .find(|u| {
                o.user_can_sign_in(u)
                    && o.user_has_permission(u, "PermissionsExportReport", now)
                    && *u != o.service_user
            })
            .expect("an exporter")
    };
    let outcome = org.people.export(
        &org.sim,
        &user,
        &sfsim::activity::ExportRequest { rows: Some(25_000), ..Default::default() },
    );
    assert_eq!(outcome.expect("export").event_identifiers.len(), 3);
    let tls = org.grpc_tls_addr.expect("TLS listener");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pubsub_python_check.py");
    let env = vec![
        ("SFSIM_URL", instance),
        ("SFSIM_TOKEN", token),
        ("SFSIM_ORG", org.sim.org().id.to_string()),
        ("PUBSUB_TARGET", format!("localhost:{}", tls.port())),
        ("PROTO_ROOT", concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto").to_owned()),
        ("EXPECTED", "3".into()),
        ("ROWS", "25000".into()),
    ];
    python(&org, script, env).await;
}

#[tokio::test]
async fn an_integration_signs_in_with_the_jwt_bearer_flow() {
    let (org, instance, _) = org_and_token(40).await;
    let (client_id, _) = org.connected_app();
    let (username, _) = org.service_account();
    let other = {
        let o = org.sim.org();
        let user = o.user_ids().into_iter().find(|u| o.user_can_sign_in(u) && *u != o.service_user).expect("a user");
        o.username(&user)
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jwt_bearer_check.py");
    let env = vec![
        ("SFSIM_URL", instance),
        ("SFSIM_CONTROL", format!("http://{}/control/v1", org.http_addr)),
        ("SFSIM_CLIENT_ID", client_id),
        ("SFSIM_USERNAME", username),
        ("SFSIM_OTHER_USERNAME", other),
    ];
    python(&org, script, env).await;
}
