//! The Secrets TLS material comes from, by namespace/name. Only the keys the
//! gateway reads are kept (`tls.crt`, `tls.key`, `ca.crt`), and nothing of
//! them is ever logged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use router_api::v1alpha1::{CA_CERT, TLS_CERT, TLS_KEY, secret_value};
use router_core::ingress::SecretKey;

/// Secret contents, `data` and `stringData` merged (stringData wins, as the API server does).
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    by_key: BTreeMap<SecretKey, BTreeMap<String, Vec<u8>>>,
}

impl Secrets {
    pub fn insert(&mut self, secret: &Secret) {
        let key = SecretKey {
            namespace: secret.metadata.namespace.clone().unwrap_or_else(|| router_api::manifest::DEFAULT_NAMESPACE.to_owned()),
            name: secret.metadata.name.clone().unwrap_or_default(),
        };
        let data: BTreeMap<String, Vec<u8>> =
            [TLS_CERT, TLS_KEY, CA_CERT].into_iter().filter_map(|k| secret_value(secret, k).map(|v| (k.to_owned(), v.to_vec()))).collect();
        self.by_key.insert(key, data);
    }

    /// One key of one Secret; the error says which is missing.
    pub fn get(&self, secret: &SecretKey, field: &'static str) -> Result<&[u8], String> {
        let data = self.by_key.get(secret).ok_or_else(|| format!("Secret {secret} not found"))?;
        data.get(field).map(Vec::as_slice).ok_or_else(|| format!("Secret {secret} has no {field}"))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn string_data_wins_and_other_keys_are_not_kept() {
        let mut s = Secret::default();
        s.metadata.name = Some("cert".into());
        s.data = Some(BTreeMap::from([("tls.crt".into(), ByteString(b"old".to_vec())), ("password".into(), ByteString(b"x".to_vec()))]));
        s.string_data = Some(BTreeMap::from([("tls.crt".into(), "new".into())]));
        let mut secrets = Secrets::default();
        secrets.insert(&s);
        let key = SecretKey { namespace: "default".into(), name: "cert".into() };
        assert_eq!(secrets.get(&key, TLS_CERT).unwrap(), b"new");
        assert_eq!(secrets.get(&key, TLS_KEY).unwrap_err(), "Secret default/cert has no tls.key");
        assert!(!secrets.by_key[&key].contains_key("password"));
        assert_eq!(secrets.get(&SecretKey { namespace: "x".into(), name: "y".into() }, CA_CERT).unwrap_err(), "Secret x/y not found");
    }
}
