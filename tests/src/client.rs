//! A small HTTP client over hyper-util for tests: HTTP/1.1 or h2c with prior knowledge.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The backend that answered (its x-backend header).
    pub fn backend(&self) -> Option<&str> {
        self.header("x-backend")
    }
}

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn http1() -> Self {
        Self { inner: HyperClient::builder(TokioExecutor::new()).build_http() }
    }

    pub fn h2c() -> Self {
        Self { inner: HyperClient::builder(TokioExecutor::new()).http2_only(true).build_http() }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }

    pub async fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(20), self.inner.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}
