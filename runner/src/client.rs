//! The runner's side of the runner API (`gantry_protocol`), over HTTP.

use gantry_protocol::{
    Assignment, ClaimRequest, FinishRequest, HeartbeatResponse, JobId, LogAck, CLAIM_PATH,
    LEASE_HEADER,
};
use reqwest::StatusCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server is unreachable: {0}")]
    Unreachable(String),
    #[error("the server refused the runner token: check --token / GANTRY_RUNNER_TOKEN")]
    Unauthorized,
    #[error("the job is no longer this runner's (its lease expired, or it was canceled)")]
    LeaseLost,
    #[error("the log has a gap: the server holds {size} bytes")]
    Gap { size: u64 },
    #[error("the server answered {status}: {message}")]
    Server { status: u16, message: String },
}

/// Whether `base` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
fn on_this_machine(base: &str) -> bool {
    let Some(host) = reqwest::Url::parse(base)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ServerClient {
    pub fn new(base: &str, token: &str) -> ServerClient {
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        // A server on this machine (the embedded runner's, the job
        // process's) is reached directly: a proxy the environment names
        // for the way out cannot reach this machine's loopback.
        if on_this_machine(base) {
            http = http.no_proxy();
        }
        let http = http.build().unwrap_or_default();
        ServerClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    async fn check(
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ClientError> {
        let response = response.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized),
            s if s.is_server_error() => Err(ClientError::Unreachable(format!("{s}"))),
            _ => Ok(response),
        }
    }

    /// A call about a held job: authenticated, with its lease.
    fn job_call(&self, path: &str, lease: &str, timeout: Duration) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(LEASE_HEADER, lease)
            .timeout(timeout)
    }

    /// The answer to a call about a held job: success, or the lease is lost (409).
    async fn held(
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ClientError> {
        let response = Self::check(response).await?;
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::CONFLICT => Err(ClientError::LeaseLost),
            _ => Err(Self::unexpected(response).await),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        response
            .json()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }

    /// Any status the protocol does not name.
    async fn unexpected(response: reqwest::Response) -> ClientError {
        ClientError::Server {
            status: response.status().as_u16(),
            message: response.text().await.unwrap_or_default(),
        }
    }

    /// Waits up to `wait` for a job.
    pub async fn claim(
        &self,
        runner: &str,
        labels: &std::collections::BTreeMap<String, String>,
        wait: Duration,
    ) -> Result<Option<Assignment>, ClientError> {
        let request = ClaimRequest {
            runner: runner.into(),
            wait_seconds: wait.as_secs(),
            labels: labels.clone(),
        };
        let response = self
            .http
            .post(format!("{}{CLAIM_PATH}", self.base))
            .bearer_auth(&self.token)
            .timeout(wait + Duration::from_secs(30))
            .json(&request)
            .send()
            .await;
        let response = Self::check(response).await?;
        match response.status() {
            StatusCode::OK => response
                .json()
                .await
                .map(Some)
                .map_err(|e| ClientError::Unreachable(format!("bad assignment: {e}"))),
            StatusCode::NO_CONTENT => Ok(None),
            _ => Err(Self::unexpected(response).await),
        }
    }

    pub async fn heartbeat(
        &self,
        job: JobId,
        lease: &str,
    ) -> Result<HeartbeatResponse, ClientError> {
        let response = self
            .job_call(
                &gantry_protocol::heartbeat_path(job),
                lease,
                Duration::from_secs(20),
            )
            .send()
            .await;
        Self::json(Self::held(response).await?).await
    }

    pub async fn log(
        &self,
        job: JobId,
        lease: &str,
        offset: u64,
        chunk: bytes::Bytes,
    ) -> Result<LogAck, ClientError> {
        let response = self
            .job_call(
                &gantry_protocol::log_path(job, offset),
                lease,
                Duration::from_secs(60),
            )
            .body(chunk)
            .send()
            .await;
        let response = Self::check(response).await?;
        match response.status() {
            StatusCode::OK => response
                .json()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string())),
            // A gap answers with the size to resume from; a lost lease answers with an error.
            StatusCode::CONFLICT => match response.json::<LogAck>().await {
                Ok(ack) => Err(ClientError::Gap { size: ack.size }),
                Err(_) => Err(ClientError::LeaseLost),
            },
            _ => Err(Self::unexpected(response).await),
        }
    }

    pub async fn finish(
        &self,
        job: JobId,
        lease: &str,
        report: &FinishRequest,
    ) -> Result<(), ClientError> {
        let response = self
            .job_call(
                &gantry_protocol::finish_path(job),
                lease,
                Duration::from_secs(30),
            )
            .json(report)
            .send()
            .await;
        Self::held(response).await.map(|_| ())
    }

    /// Asks to deploy to `target`; `granted: false` names who deploys there now.
    pub async fn deploy_lock(
        &self,
        job: JobId,
        lease: &str,
        target: &str,
    ) -> Result<gantry_protocol::DeployLockResponse, ClientError> {
        let response = self
            .job_call(
                &gantry_protocol::deploy_lock_path(job),
                lease,
                Duration::from_secs(30),
            )
            .json(&gantry_protocol::DeployLockRequest {
                target: target.to_string(),
            })
            .send()
            .await;
        Self::json(Self::held(response).await?).await
    }
}

#[cfg(test)]
mod tests {
    use super::on_this_machine;

    #[test]
    fn only_loopback_servers_are_on_this_machine() {
        for base in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:80/",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:8080",
        ] {
            assert!(on_this_machine(base), "{base}");
        }
        for base in [
            "http://10.0.0.5:8080",
            "https://gantry.example.com",
            "http://localhost.example.com",
            "not a url",
        ] {
            assert!(!on_this_machine(base), "{base}");
        }
    }
}
