//! A scripted person at sfsim's authorize page: signs in and clicks Allow, as the
//! demo's auto-connect and tests need. It uses only what a browser would: the pages'
//! forms, cookies, and the final redirect.

use anyhow::{Context, bail};

/// The hidden `<input>` fields of one of sfsim's own pages.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Where the browser was sent back to after Allow: the client's callback.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: String,
    pub code: String,
    /// Present when the authorize request carried one.
    pub state: Option<String>,
}

/// Opens `authorize_url`, signs in as `username`, clicks Allow, and returns the
/// callback the browser is sent back to, with its `code` and `state`.
pub async fn sign_in_and_allow(authorize_url: &str, username: &str, password: &str) -> anyhow::Result<Callback> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build()?;
    let page = http.get(authorize_url).send().await.context("opening the authorize page")?;
    let status = page.status();
    let html = page.text().await?;
    if !status.is_success() {
        bail!("the authorize page answered {status}: {html}");
    }
    let action = {
        let url = url::Url::parse(authorize_url)?;
        format!("{}/services/oauth2/authorize", url.origin().ascii_serialization())
    };
    let mut form = hidden_fields(&html);
    form.extend(
        [("action", "login"), ("username", username), ("pw", password)].map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let consent = http.post(&action).form(&form).send().await.context("signing in")?.text().await?;
    if !consent.contains("oaapprove") {
        bail!("sign-in as {username} failed");
    }
    let mut form = hidden_fields(&consent);
    form.push(("action".into(), "allow".into()));
    let redirect = http.post(&action).form(&form).send().await.context("clicking Allow")?;
    let location = redirect.headers().get("location").context("Allow did not redirect")?.to_str()?.to_owned();
    let parsed = url::Url::parse(&location).with_context(|| format!("Allow redirected to {location:?}"))?;
    let param = |name: &str| parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let code = param("code").with_context(|| format!("the callback {location:?} has no code"))?;
    Ok(Callback { code, state: param("state"), url: location })
}
