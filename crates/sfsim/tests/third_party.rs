//! A widely used third-party client (Python's simple-salesforce) works against sfsim
//! unchanged. `scripts/test.sh` installs it.

use std::process::Command;

#[tokio::test]
async fn simple_salesforce_queries_pages_and_errors() {
    let config = sfsim::Config {
        users: 1800,
        https_addr: Some(([127, 0, 0, 1], 0).into()),
        callback_urls: vec!["http://127.0.0.1:9/cb".into()],
        ..sfsim::Config::default()
    };
    let org = sfsim::start(config).await.expect("sfsim");
    let http = format!("http://{}", org.http_addr);
    let (client_id, client_secret, user, password) = {
        let o = org.sim.org();
        let s = o.service_user.clone();
        (o.app.client_id.clone(), o.app.client_secret.clone(), o.username(&s), o.passwords[s.as_str()].clone())
    };
    let authorize = format!(
        "{http}/services/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=api"
    );
    let back = sfsim::browser::sign_in_and_allow(&authorize, &user, &password).await.expect("sign in");
    let code = url::Url::parse(&back)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
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
    let instance = tokens["instance_url"].as_str().expect("instance_url");
    assert!(instance.starts_with("https://localhost:"), "{instance}");

    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("sfsim.pem");
    std::fs::write(&ca, &org.sim.tls_cert_pem).expect("CA file");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/simple_salesforce_check.py");
    let output = tokio::task::spawn_blocking({
        let (instance, token) = (instance.to_owned(), tokens["access_token"].as_str().expect("token").to_owned());
        move || {
            Command::new("python3")
                .arg(script)
                .env("SFSIM_URL", instance)
                .env("SFSIM_TOKEN", token)
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
    assert!(output.status.success() && stdout.trim() == "ok", "simple-salesforce failed:\n{stdout}\n{stderr}");
}
