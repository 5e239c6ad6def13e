//! The node a pod runs on, read once: where a gateway is when it is told to
//! take its locality from its node (`--locality-from-node`), through the
//! Downward API's `NODE_NAME` and a `get` on that one node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

/// The labels of node `name` (the topology labels among them).
pub async fn labels(client: &Client, name: &str) -> Result<BTreeMap<String, String>, kube::Error> {
    Ok(Api::<Node>::all(client.clone()).get(name).await?.metadata.labels.unwrap_or_default())
}
