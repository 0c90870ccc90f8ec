//! The CLI's HTTP client for a node's gateway: one place that turns a non-2xx answer into the
//! node's own reason (`{"error": kind, "message": text}`).

use anyhow::{Context, bail};

/// A successful answer: body and headers of interest.
pub(super) struct Answer {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn answer(url: &str, response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Answer> {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-wasmesh") || *name == "server-timing")
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .map(|v| {
                format!(
                    "{}: {}",
                    v["error"].as_str().unwrap_or("error"),
                    v["message"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the node refused ({}): {reason}", status.as_u16());
    }
    Ok(Answer { body, headers })
}

/// POSTs `body` to `url`.
pub(super) fn post(url: &str, body: &[u8]) -> anyhow::Result<Answer> {
    let response = agent()
        .post(url)
        .content_type("application/octet-stream")
        .send(body)
        .with_context(|| format!("cannot reach {url}"))?;
    answer(url, response)
}

/// POSTs `body` to `url` with a progress bar on stderr (when it is a terminal).
pub(super) fn post_with_progress(url: &str, body: Vec<u8>) -> anyhow::Result<Answer> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(body.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("uploading");
    let mut reader = bar.wrap_read(std::io::Cursor::new(body));
    let response = agent()
        .post(url)
        .content_type("application/octet-stream")
        .send(ureq::SendBody::from_reader(&mut reader))
        .with_context(|| format!("cannot reach {url}"));
    bar.finish_and_clear();
    answer(url, response?)
}

/// GETs `url`.
pub(super) fn get(url: &str) -> anyhow::Result<Answer> {
    let response = agent()
        .get(url)
        .call()
        .with_context(|| format!("cannot reach {url}"))?;
    answer(url, response)
}
