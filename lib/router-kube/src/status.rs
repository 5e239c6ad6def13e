//! Status writes by server-side apply: each component applies only the
//! fields it owns under its own field manager, so writers of different
//! fields (and condition types: the conditions list is a map keyed by type)
//! never overwrite each other. Callers compare before they write, so an
//! unchanged status costs no request.

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

/// Applies `status` (the owned fields only) to object `name` as `manager`.
pub async fn apply<K>(api: &Api<K>, name: &str, manager: &str, status: impl Serialize) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    // force: a field this component owns is its alone, even if another manager touched it by hand.
    api.patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch)).await.map(|_| ())
}
