//! A client of a node's gateway (`/v1/...`, `/metrics`), blocking: the CLI's, and the one the
//! tests, the simulation and the benches call nodes with. Every answer comes back with its
//! status, headers and body; [`Answer::ok`] turns a refusal into the node's own reason
//! (`{"error": kind, "message": text}`).

use std::io::Read;
use std::time::Duration;

use wasmesh_protocol::PublishBundle;

/// The largest answer body read (an invocation's output is far smaller; a whole blob fits).
pub const MAX_ANSWER_BYTES: u64 = 1 << 30;

/// What can go wrong talking to a gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the node is not there, or the connection broke.
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// The node answered with a refusal.
    #[error("the node refused ({status}): {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// `kind: message` from the node's error body, or the body itself.
        reason: String,
    },
    /// The answer's body is not the JSON expected.
    #[error("the answer of {url} is not JSON: {source}")]
    NotJson {
        /// What was asked.
        url: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// One answer of the gateway.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What was asked.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The peer that ran the request (`x-wasmesh-executed-by`), empty when none did.
    pub fn executed_by(&self) -> &str {
        self.header("x-wasmesh-executed-by").unwrap_or_default()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::NotJson {
            url: self.url.clone(),
            source,
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The answer if its status is a success; otherwise the node's reason as an error.
    pub fn ok(self) -> Result<Self, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let reason = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .map(|v| {
                format!(
                    "{}: {}",
                    v["error"].as_str().unwrap_or("error"),
                    v["message"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| self.text());
        Err(ClientError::Refused {
            status: self.status,
            reason,
        })
    }
}

/// A node's gateway at one base URL (`http://127.0.0.1:PORT`).
#[derive(Debug, Clone)]
pub struct Gateway {
    base: String,
    agent: ureq::Agent,
}

impl Gateway {
    /// The gateway at `base`, with no timeout of its own.
    pub fn new(base: &str) -> Self {
        Self::build(base, None)
    }

    /// The gateway at `base`; each call gives up after `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        Self::build(base, Some(timeout))
    }

    fn build(base: &str, timeout: Option<Duration>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path`.
    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let response = self.agent.get(&url).call();
        answer(url, response)
    }

    /// POSTs `body` to `path` with `headers`.
    pub fn post(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let mut request = self
            .agent
            .post(&url)
            .content_type("application/octet-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send(body);
        answer(url, response)
    }

    /// POSTs what `body` reads to `path` (a large upload, read as it is sent).
    pub fn post_reader(&self, path: &str, body: &mut dyn Read) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let response = self
            .agent
            .post(&url)
            .content_type("application/octet-stream")
            .send(ureq::SendBody::from_reader(body));
        answer(url, response)
    }

    /// Publishes `bundle` (`POST /v1/publish`).
    pub fn publish(&self, bundle: &PublishBundle) -> Result<Answer, ClientError> {
        self.post("/v1/publish", &bundle.encode(), &[])
    }

    /// Invokes `module_ref` with `input` (`POST /v1/invoke/{module_ref}`).
    pub fn invoke(
        &self,
        module_ref: impl std::fmt::Display,
        input: &[u8],
    ) -> Result<Answer, ClientError> {
        self.post(&format!("/v1/invoke/{module_ref}"), input, &[])
    }

    /// The node's metrics page as text (`GET /metrics`).
    pub fn metrics(&self) -> Result<String, ClientError> {
        Ok(self.get("/metrics")?.ok()?.text())
    }
}

fn answer(
    url: String,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, ClientError> {
    let unreachable = |url: &str, source: ureq::Error| ClientError::Unreachable {
        url: url.to_owned(),
        source: Box::new(source),
    };
    let response = response.map_err(|e| unreachable(&url, e))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
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
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| unreachable(&url, e))?;
    Ok(Answer {
        url,
        status,
        headers,
        body,
    })
}
