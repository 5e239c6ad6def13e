use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object in the same namespace as the referrer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent (an RFC 1123 DNS subdomain).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to an object that may live in another namespace. The namespace
/// defaults to the referrer's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent; the referrer's namespace when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl LocalObjectReference {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl NamespacedObjectReference {
    /// The namespace this reference points into, given the referrer's namespace.
    pub fn namespace_or<'a>(&'a self, referrer: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(referrer)
    }
}
