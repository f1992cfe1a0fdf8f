//! How fleetprep reaches AWS: the `--profile/--region/--endpoint-url` plumbing, the HTTPS client
//! and the retry policy, resolved once into the SDK's shared config.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_http_client::tls;
use aws_smithy_types::timeout::TimeoutConfig;

use super::iam::CallRecorder;

/// Where and as whom to call AWS. `Default` is the standard chain: environment variables, the
/// shared config/credentials files (profiles, SSO), container and instance metadata (IMDS).
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// A named profile from `~/.aws/config` (`--profile`); None uses `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// `--region`; None uses `AWS_REGION`, the profile, then IMDS.
    pub region: Option<String>,
    /// `--endpoint-url`: one endpoint for every service (a local endpoint such as moto, or a
    /// VPC endpoint); None uses `AWS_ENDPOINT_URL` or the regional AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Fixed dummy credentials instead of the chain: only for local endpoints in tests.
    pub dummy_credentials: bool,
    /// Attempts per call including the first (the SDK's adaptive retry mode, which also
    /// rate-limits the client after throttling responses). None means 5.
    pub max_attempts: Option<u32>,
    /// Record every SDK call (service and operation) for the IAM coverage check.
    pub(crate) recorder: Option<Arc<CallRecorder>>,
}

/// Attempts per call when [`AwsConfig::max_attempts`] is not set. The SDK default is 3; a
/// fleet-wide scale-out meets EC2 throttling often enough that two more attempts with the
/// adaptive token bucket are cheaper than failing the state and paying the state-level Retry.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

impl AwsConfig {
    /// A config for a local AWS endpoint (moto, LocalStack): that endpoint for every service,
    /// region `us-east-1` unless given, dummy credentials.
    pub fn local_endpoint(endpoint_url: impl Into<String>) -> Self {
        Self {
            endpoint_url: Some(endpoint_url.into()),
            region: Some("us-east-1".to_owned()),
            dummy_credentials: true,
            ..Self::default()
        }
    }

    /// Records every SDK call made through clients built from this config (see
    /// [`super::iam::CallRecorder`]).
    pub fn with_recorder(mut self, recorder: Arc<CallRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Resolves the SDK config (credential chain, region, endpoint) once; every service client
    /// is built from the result.
    pub async fn load(&self) -> aws_config::SdkConfig {
        // One HTTPS client for every service: hyper 1 with rustls on the `ring` provider (no
        // aws-lc C build, no legacy hyper 0.14), which keeps the clean build small.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .retry_config(
                RetryConfig::adaptive()
                    .with_max_attempts(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_attempt_timeout(std::time::Duration::from_secs(60))
                    .build(),
            );
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if self.dummy_credentials {
            loader = loader.test_credentials();
        }
        loader.load().await
    }
}
