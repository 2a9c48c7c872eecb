//! Test scenario helpers: start an sfsim on loopback, sign in through the real OAuth
//! pages, and talk to it over HTTP and gRPC the way an outside client does.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sfwire::eventbus::v1::pub_sub_client::PubSubClient;
use sha2::{Digest, Sha256};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

pub const CALLBACK: &str = "http://127.0.0.1:9/oauth/callback";

pub struct Org {
    pub running: sfsim::Running,
    pub http: reqwest::Client,
    pub info: Value,
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub instance_url: String,
    pub body: Value,
}

pub fn config(users: usize) -> sfsim::Config {
    sfsim::Config { users, seed: 7, callback_urls: vec![CALLBACK.into()], ..sfsim::Config::default() }
}

pub async fn start(config: sfsim::Config) -> Org {
    let running = sfsim::start(config).await.expect("sfsim starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let info = http
        .get(format!("{}/control/v1/org", running.base_url()))
        .send()
        .await
        .expect("org")
        .json()
        .await
        .expect("json");
    Org { running, http, info }
}

impl Org {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    pub fn client_id(&self) -> String {
        self.info["connected_app"]["client_id"].as_str().unwrap_or_default().to_owned()
    }

    pub fn client_secret(&self) -> String {
        self.info["connected_app"]["client_secret"].as_str().unwrap_or_default().to_owned()
    }

    pub fn org_id(&self) -> String {
        self.info["organization_id"].as_str().unwrap_or_default().to_owned()
    }

    pub fn service_login(&self) -> (String, String) {
        let s = &self.info["service_account"];
        (s["username"].as_str().unwrap_or_default().into(), s["password"].as_str().unwrap_or_default().into())
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(self.url(&format!("/control/v1{path}"))).json(&body).send().await.expect("control call");
        assert!(r.status().is_success(), "control {path}: {}", r.status());
        r.json().await.expect("control json")
    }

    pub async fn control_get(&self, path: &str) -> Value {
        self.http.get(self.url(&format!("/control/v1{path}"))).send().await.expect("get").json().await.expect("json")
    }

    /// Signs in on the authorize page as `username` and clicks Allow; returns the
    /// redirect's query parameters.
    pub async fn authorize_as(&self, username: &str, password: &str, verifier: &str) -> Vec<(String, String)> {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let params = [
            ("response_type", "code"),
            ("client_id", &self.client_id()),
            ("redirect_uri", CALLBACK),
            ("scope", "api refresh_token"),
            ("state", "st-123"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("prompt", "login"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let page =
            self.http.get(self.url("/services/oauth2/authorize")).query(&params).send().await.expect("authorize");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("page");
        assert!(html.contains("name=\"username\""), "a login form: {html}");
        let mut login: Vec<(String, String)> = params.to_vec();
        login
            .extend([("action", "login"), ("username", username), ("pw", password)].map(|(k, v)| (k.into(), v.into())));
        let consent = self.http.post(self.url("/services/oauth2/authorize")).form(&login).send().await.expect("login");
        let html = consent.text().await.expect("consent");
        assert!(html.contains("oaapprove"), "the Allow page: {html}");
        let mut allow: Vec<(String, String)> = params.to_vec();
        allow.push(("action".into(), "allow".into()));
        let redirect = self.http.post(self.url("/services/oauth2/authorize")).form(&allow).send().await.expect("allow");
        assert_eq!(redirect.status(), 303, "Allow redirects");
        let location = redirect.headers()["location"].to_str().expect("location").to_owned();
        assert!(location.starts_with(CALLBACK), "{location}");
        url_query(&location)
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url("/services/oauth2/token")).form(form).send().await.expect("token call")
    }

    /// The service account's tokens, through the whole web server flow.
    pub async fn authorize(&self) -> Tokens {
        let (username, password) = self.service_login();
        let verifier = "verifier-0123456789-0123456789-0123456789-0123456789";
        let query = self.authorize_as(&username, &password, verifier).await;
        let code = query.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).expect("code");
        let (id, secret) = (self.client_id(), self.client_secret());
        let response = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &id),
                ("client_secret", &secret),
                ("redirect_uri", CALLBACK),
                ("code_verifier", verifier),
            ])
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("token json");
        Tokens {
            access: body["access_token"].as_str().expect("access_token").into(),
            refresh: body["refresh_token"].as_str().expect("refresh_token").into(),
            instance_url: body["instance_url"].as_str().expect("instance_url").into(),
            body,
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.expect("GET")
    }

    pub async fn query(&self, token: &str, soql: &str) -> reqwest::Response {
        self.http
            .get(self.url("/services/data/v62.0/query"))
            .bearer_auth(token)
            .query(&[("q", soql)])
            .send()
            .await
            .expect("query")
    }

    pub async fn grpc(&self) -> PubSubClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.running.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("gRPC connects");
        PubSubClient::new(channel)
    }

    /// A request with Salesforce's auth metadata.
    pub fn request<T>(&self, token: &str, message: T) -> Request<T> {
        let mut r = Request::new(message);
        let md = r.metadata_mut();
        md.insert("accesstoken", MetadataValue::try_from(token).expect("ascii"));
        md.insert("instanceurl", MetadataValue::try_from(self.running.base_url()).expect("ascii"));
        md.insert("tenantid", MetadataValue::try_from(self.org_id()).expect("ascii"));
        r
    }

    /// The first user (not the service account) who holds Export Reports and can sign in.
    pub async fn exporter(&self) -> Value {
        let users = self.control_get("/users").await;
        let service = self.info["service_account"]["user_id"].clone();
        users
            .as_array()
            .expect("users")
            .iter()
            .find(|u| {
                u["can_export_reports"] == json!(true)
                    && u["active"] == json!(true)
                    && u["frozen"] == json!(false)
                    && u["id"] != service
            })
            .cloned()
            .expect("an exporter")
    }
}

pub fn url_query(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}
