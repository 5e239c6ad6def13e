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

/// What a referenced Secret must hold, by its standard keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretUse {
    /// A certificate chain and its key: `tls.crt`, `tls.key` (a `kubernetes.io/tls` Secret).
    Certificate,
    /// A CA bundle: `ca.crt`.
    CaBundle,
}

/// The Secret key of a certificate chain.
pub const TLS_CERT: &str = "tls.crt";
/// The Secret key of a private key.
pub const TLS_KEY: &str = "tls.key";
/// The Secret key of a CA bundle.
pub const CA_CERT: &str = "ca.crt";

impl SecretUse {
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Self::Certificate => &[TLS_CERT, TLS_KEY],
            Self::CaBundle => &[CA_CERT],
        }
    }
}

/// One key of a Secret as the API server would store it: `stringData` wins over `data`.
pub fn secret_value<'a>(secret: &'a k8s_openapi::api::core::v1::Secret, key: &str) -> Option<&'a [u8]> {
    let from_string = secret.string_data.as_ref().and_then(|d| d.get(key)).map(String::as_bytes);
    from_string.or_else(|| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice()))
}
