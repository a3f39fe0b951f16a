//! Local stand-ins for AWS: moto for S3, ECS, ECR and CodeDeploy, and
//! emulators of what moto lacks — Elastic Beanstalk's deploy operations, and
//! ECS services and CodeDeploy deployments that move through their life
//! cycle and can fail. Each speaks
//! the service's real wire protocol, so the real AWS SDK talks to it unchanged.

pub mod codedeploy;
pub mod ecs;
pub mod elasticbeanstalk;
pub mod moto;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::SystemTime;

/// An error on AWS's JSON 1.1 protocol (ECS, CodeDeploy): 400 and its type.
fn json11_error(kind: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.1")],
        serde_json::json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

/// An answer on AWS's JSON 1.1 protocol.
fn json11_ok(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

/// Reads an object from an S3 endpoint with a signed, path-style request
/// (moto refuses anonymous reads of private objects, as S3 does).
pub async fn s3_get(endpoint: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testkit", "testkit", None, None, "testkit",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    object.body.collect().await.ok().map(|b| b.to_vec())
}

/// AWS's timestamp format in XML: `2026-11-22T04:30:00.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Escapes text for an XML element.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fresh request id, as AWS puts in every response.
pub fn request_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
