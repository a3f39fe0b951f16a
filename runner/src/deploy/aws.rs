//! AWS clients for a deploy: credentials from the options or the job's
//! secrets, else the runner's standard chain; region; and endpoints from the
//! `endpoint` option or the standard `AWS_ENDPOINT_URL[_<SERVICE>]` variables.

use super::values::{resolve, secret_or_env};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use gantry_pipeline::AwsAccess;
use gantry_protocol::SecretVar;
use std::collections::BTreeMap;

/// The AWS services Gantry calls, named as the SDK's endpoint variables name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    ElasticBeanstalk,
    Ecs,
    Ecr,
    CodeDeploy,
}

impl Service {
    fn env_suffix(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::ElasticBeanstalk => "ELASTIC_BEANSTALK",
            Service::Ecs => "ECS",
            Service::Ecr => "ECR",
            Service::CodeDeploy => "CODEDEPLOY",
        }
    }
}

/// Everything needed to build a client of any service for one deploy.
#[derive(Debug, Clone)]
pub struct Aws {
    pub config: SdkConfig,
    /// `endpoint` option: for the provider's own service (and S3 for EB's bundle).
    endpoint: Option<String>,
    /// The job's `AWS_ENDPOINT_URL*` variables (the runner's own are read by the SDK).
    job_env: BTreeMap<String, String>,
    /// Whether the keys came from the pipeline or secrets (else the runner's chain).
    pub explicit_keys: bool,
}

impl Aws {
    pub async fn load(
        access: &AwsAccess,
        env: &BTreeMap<String, String>,
        secrets: &[SecretVar],
    ) -> Aws {
        let key = access
            .access_key_id
            .as_ref()
            .and_then(|v| resolve(v, env, secrets))
            .or_else(|| secret_or_env("AWS_ACCESS_KEY_ID", env, secrets));
        let secret = access
            .secret_access_key
            .as_ref()
            .and_then(|v| resolve(v, env, secrets))
            .or_else(|| secret_or_env("AWS_SECRET_ACCESS_KEY", env, secrets));
        let token = secret_or_env("AWS_SESSION_TOKEN", env, secrets);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(access.region.clone()));
        let explicit_keys = key.is_some() && secret.is_some();
        if let (Some(key), Some(secret)) = (key, secret) {
            loader =
                loader.credentials_provider(Credentials::new(key, secret, token, None, "gantry"));
        }
        let job_env = env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Aws {
            config: loader.load().await,
            endpoint: access.endpoint.clone(),
            job_env,
            explicit_keys,
        }
    }

    /// Where `service` is reached, when not at AWS's own address.
    pub fn endpoint(&self, service: Service, provider: Service) -> Option<String> {
        let own = if service == provider {
            self.endpoint.clone()
        } else {
            None
        };
        own.or_else(|| {
            self.job_env
                .get(&format!("AWS_ENDPOINT_URL_{}", service.env_suffix()))
                .cloned()
        })
        .or_else(|| self.job_env.get("AWS_ENDPOINT_URL").cloned())
        .or_else(|| {
            std::env::var(format!("AWS_ENDPOINT_URL_{}", service.env_suffix()))
                .ok()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        })
        .map(|url| with_scheme(&url))
    }

    pub fn s3(&self, provider: Service, force_path_style: bool) -> aws_sdk_s3::Client {
        let endpoint = self.endpoint(Service::S3, provider);
        let local = endpoint.as_deref().is_some_and(is_local);
        let mut builder = aws_sdk_s3::config::Builder::from(&self.config)
            .force_path_style(force_path_style || local);
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(url).request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    pub fn elasticbeanstalk(&self) -> aws_sdk_elasticbeanstalk::Client {
        let mut builder = aws_sdk_elasticbeanstalk::config::Builder::from(&self.config);
        if let Some(url) = self.endpoint(Service::ElasticBeanstalk, Service::ElasticBeanstalk) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_elasticbeanstalk::Client::from_conf(builder.build())
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        let mut builder = aws_sdk_ecs::config::Builder::from(&self.config);
        if let Some(url) = self.endpoint(Service::Ecs, Service::Ecs) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_ecs::Client::from_conf(builder.build())
    }

    pub fn codedeploy(&self) -> aws_sdk_codedeploy::Client {
        let mut builder = aws_sdk_codedeploy::config::Builder::from(&self.config);
        if let Some(url) = self.endpoint(Service::CodeDeploy, Service::CodeDeploy) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_codedeploy::Client::from_conf(builder.build())
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        let mut builder = aws_sdk_ecr::config::Builder::from(&self.config);
        if let Some(url) = self.endpoint(Service::Ecr, Service::Ecr) {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_ecr::Client::from_conf(builder.build())
    }
}

/// dpl: "https assumed if no scheme".
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

/// Loopback and IP endpoints (local stand-ins, MinIO) cannot serve
/// `bucket.host` names: they need path-style addressing.
fn is_local(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

/// An AWS error as a user reads it: the service's code and message, or
/// what went wrong on the way (no credentials, endpoint unreachable).
pub fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let Some(service) = e.as_service_error() {
        match (service.code(), service.message()) {
            (Some(code), Some(message)) => return format!("{code}: {message}"),
            (Some(code), None) => return code.to_string(),
            (None, Some(message)) => return message.to_string(),
            (None, None) => {}
        }
    }
    DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_use_path_style() {
        assert!(is_local("http://127.0.0.1:4566"));
        assert!(is_local("http://localhost:9000/"));
        assert!(!is_local("https://nyc3.digitaloceanspaces.com"));
        assert_eq!(with_scheme("s3.example.com"), "https://s3.example.com");
    }

    #[tokio::test]
    async fn endpoints_follow_the_sdk_variables_and_the_option_wins() {
        let env: BTreeMap<String, String> = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", "http://127.0.0.1:2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let access = AwsAccess {
            region: "eu-west-1".into(),
            ..Default::default()
        };
        let aws = Aws::load(&access, &env, &[]).await;
        let eb = Service::ElasticBeanstalk;
        assert_eq!(aws.endpoint(eb, eb).as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(
            aws.endpoint(Service::S3, eb).as_deref(),
            Some("http://127.0.0.1:1")
        );
        let access = AwsAccess {
            endpoint: Some("http://127.0.0.1:3".into()),
            ..access
        };
        let aws = Aws::load(&access, &env, &[]).await;
        assert_eq!(aws.endpoint(eb, eb).as_deref(), Some("http://127.0.0.1:3"));
        assert_eq!(
            aws.endpoint(Service::S3, eb).as_deref(),
            Some("http://127.0.0.1:1")
        );
    }
}
