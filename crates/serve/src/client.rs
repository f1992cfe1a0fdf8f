//! A minimal Step Functions JSON 1.0 client over hyper, for benchmarks that drive any
//! endpoint (this server, moto's) without the AWS SDK build. It signs nothing: it sends an
//! `Authorization` header with a credential scope only, which is what routes a request to
//! the `states` service on a multi-service endpoint (moto) and what this server reads the
//! region from.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

use crate::protocol::{DEFAULT_REGION, TARGET_PREFIX};

/// A client for one endpoint. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    region: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Client {
    /// A client for `endpoint` (`http://HOST:PORT`).
    pub fn new(endpoint: &str) -> Client {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        Client {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: DEFAULT_REGION.to_owned(),
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector),
        }
    }

    /// The same client (and connection pool) for another region.
    pub fn in_region(&self, region: &str) -> Client {
        Client {
            region: region.to_owned(),
            ..self.clone()
        }
    }

    /// Calls `op` (`StartExecution`, …); the response body, or `Err` with the status and the
    /// error body.
    pub async fn call(&self, op: &str, request: &Value) -> Result<Value, String> {
        let req = hyper::Request::post(format!("{}/", self.endpoint))
            .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20240101/{}/states/aws4_request, SignedHeaders=host, Signature=0",
                    self.region
                ),
            )
            .body(Full::new(Bytes::from(request.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(req)
            .await
            .map_err(|e| format!("{op}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{op}: {e}"))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{op}: HTTP {status}: {value}"))
        }
    }

    /// POSTs JSON to a path outside the API (moto's `/moto-api/config`, the admin routes).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let req = hyper::Request::post(format!("{}{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(req)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}
