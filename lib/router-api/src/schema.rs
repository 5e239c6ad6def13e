//! Validation of untyped objects against the generated CRD schemas, the way
//! an API server would do it: the structural OpenAPI schema (types, enums,
//! ranges, patterns, required fields) and then the CEL
//! `x-kubernetes-validations` rules, evaluated with kube-cel on the object
//! with schema defaults applied.
//!
//! Standalone mode runs every router object through this before it is
//! accepted, so a file that a cluster would reject is rejected on a laptop
//! too, with the same field-named message.
//!
//! The cluster components never trust that the API server ran the CEL rules:
//! a 1.24 server without the `CustomResourceValidationExpressions` gate, or
//! any server where a rule was dropped, stores objects that break them.
//! [`Verdicts`] checks each typed object from a watch once per generation;
//! router-controller reports a failure as `Accepted=False` reason `Invalid`,
//! and router-gateway and service-discovery leave the object out.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Mutex,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// One reason an object is invalid, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `spec.match.pathPrefix` or `spec.destinations[0].weight`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All the reasons an object is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidObject(pub Vec<FieldError>);

impl fmt::Display for InvalidObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct KindSchema {
    /// The CEL rules, parsed once: kube-cel's schema-walking `validate` parses
    /// every rule again for every object, which made validation of a
    /// 10,000-route configuration take seconds.
    cel: kube_cel::CompiledSchema,
    structural: jsonschema::Validator,
}

/// Validators for every router kind, compiled once from [`crate::v1alpha1::crds`].
pub struct SchemaValidator {
    kinds: HashMap<String, KindSchema>,
    cel: kube_cel::Validator,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("CRD {crd} has no schema for its version")]
    MissingSchema { crd: String },
    #[error("CRD {crd}: schema does not compile: {message}")]
    Compile { crd: String, message: String },
}

impl SchemaValidator {
    /// Compiles the schemas of the router's own CRDs.
    pub fn for_router_kinds() -> Result<Self, SchemaError> {
        Self::new(&crate::v1alpha1::crds())
    }

    pub fn new(crds: &[CustomResourceDefinition]) -> Result<Self, SchemaError> {
        let mut kinds = HashMap::new();
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let openapi = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| SchemaError::MissingSchema { crd: name.clone() })?;
            let openapi = serde_json::to_value(openapi).map_err(|e| SchemaError::Compile { crd: name.clone(), message: e.to_string() })?;
            let structural = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .should_validate_formats(false)
                .build(&openapi)
                .map_err(|e| SchemaError::Compile { crd: name.clone(), message: e.to_string() })?;
            let cel = kube_cel::compile_schema(&openapi);
            if cel.has_errors() {
                let message = cel.compilation_errors().iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join("; ");
                return Err(SchemaError::Compile { crd: name, message });
            }
            kinds.insert(crd.spec.names.kind.clone(), KindSchema { cel, structural });
        }
        Ok(Self { kinds, cel: kube_cel::Validator::new() })
    }

    /// Whether `kind` is one this validator knows.
    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// Validates `object` (a whole object with apiVersion, kind, metadata, spec)
    /// against the schema of `kind`. Unknown kinds pass: they are not ours to judge.
    pub fn validate(&self, kind: &str, object: &Value) -> Result<(), InvalidObject> {
        let Some(schema) = self.kinds.get(kind) else {
            return Ok(());
        };
        let mut errors: Vec<FieldError> = schema
            .structural
            .iter_errors(object)
            .map(|e| FieldError { field: dotted(e.instance_path().as_str()), message: e.to_string() })
            .collect();
        // CEL rules assume a structurally valid object (the API server never
        // runs them otherwise), so they only run once the structure is right.
        if errors.is_empty()
            && let Err(cel_errors) = self.cel.validate_compiled(&schema.cel, object, None)
        {
            errors.extend(cel_errors.into_iter().map(|e| FieldError { field: e.field_path.clone(), message: e.message.clone() }));
        }
        if errors.is_empty() { Ok(()) } else { Err(InvalidObject(errors)) }
    }
}

/// (namespace, name, uid, generation): a generation changes with every spec change.
/// [`SchemaValidator`] verdicts on typed objects from the API server, kept per
/// object generation so a pass over thousands of unchanged objects validates
/// none of them again. Only the spec is the user's: status and metadata
/// (beyond name and namespace) are left out of the check.
pub struct Verdicts {
    validator: SchemaValidator,
    seen: Mutex<HashMap<String, KindVerdicts>>,
}

/// The verdicts on one kind's objects, by uid (`namespace/name` for an object without one).
#[derive(Default)]
struct KindVerdicts {
    by_id: HashMap<String, Verdict>,
    passes: u64,
}

struct Verdict {
    generation: Option<i64>,
    invalid: Option<InvalidObject>,
    /// The last pass that saw the object: the others are forgotten at the end of a pass.
    pass: u64,
}

impl Verdicts {
    pub fn new(validator: SchemaValidator) -> Self {
        Self { validator, seen: Mutex::default() }
    }

    /// For the router's own kinds.
    pub fn for_router_kinds() -> Result<Self, SchemaError> {
        SchemaValidator::for_router_kinds().map(Self::new)
    }

    /// The objects among `objects` (all of one kind) that fail validation, by
    /// (namespace, name). Verdicts on objects no longer in `objects` are
    /// forgotten. An object seen before at the same generation costs a map
    /// lookup by its uid, nothing allocated: the gateway asks on every rebuild.
    pub fn invalid<'a, K>(&self, objects: impl IntoIterator<Item = &'a K>) -> BTreeMap<(String, String), InvalidObject>
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize + 'a,
    {
        let kind = K::kind(&());
        if !self.validator.knows(&kind) {
            return BTreeMap::new();
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains_key(kind.as_ref()) {
            seen.insert(kind.to_string(), KindVerdicts::default());
        }
        let Some(verdicts) = seen.get_mut(kind.as_ref()) else { return BTreeMap::new() };
        verdicts.passes += 1;
        let pass = verdicts.passes;
        let mut invalid = BTreeMap::new();
        for object in objects {
            let meta = object.meta();
            let id = match &meta.uid {
                Some(uid) => Cow::Borrowed(uid.as_str()),
                None => {
                    let (namespace, name) = crate::manifest::object_key(meta);
                    Cow::Owned(format!("{namespace}/{name}"))
                }
            };
            let check = || {
                let (namespace, name) = crate::manifest::object_key(meta);
                Verdict { generation: meta.generation, invalid: self.check(&kind, &namespace, &name, object).err(), pass }
            };
            let verdict = match verdicts.by_id.get_mut(id.as_ref()) {
                Some(v) if v.generation == meta.generation => {
                    v.pass = pass;
                    v
                }
                Some(v) => {
                    *v = check();
                    v
                }
                None => verdicts.by_id.entry(id.into_owned()).or_insert_with(check),
            };
            if let Some(e) = &verdict.invalid {
                invalid.insert(crate::manifest::object_key(meta), e.clone());
            }
        }
        verdicts.by_id.retain(|_, v| v.pass == pass);
        invalid
    }

    fn check<K: serde::Serialize>(&self, kind: &str, namespace: &str, name: &str, object: &K) -> Result<(), InvalidObject> {
        let full = serde_json::to_value(object).unwrap_or_default();
        let user_part = serde_json::json!({
            "apiVersion": full.get("apiVersion"),
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": full.get("spec"),
        });
        self.validator.validate(kind, &user_part)
    }
}

/// `/spec/destinations/0/weight` → `spec.destinations[0].weight`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    if out.is_empty() { "<root>".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::{Verdicts, dotted};
    use crate::v1alpha1::VPCService;

    fn service(name: &str, generation: i64, port: i32, rule_broken: bool) -> VPCService {
        // The typed object a watch delivers; a server that skipped CEL stored both references.
        let mut spec = serde_json::json!({"vpcAttachmentRef": {"name": "a"}, "port": port});
        if rule_broken {
            spec["vpcAttachmentSelector"] = serde_json::json!({"matchLabels": {"app": "x"}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
            "metadata": {"name": name, "namespace": "n", "uid": name, "generation": generation},
            "spec": spec,
            "status": {"readyEndpoints": 3},
        }))
        .unwrap()
    }

    #[test]
    fn objects_breaking_a_cel_rule_the_server_skipped_are_named_with_the_rule_message() {
        let verdicts = Verdicts::for_router_kinds().unwrap();
        let objects = [service("good", 1, 80, false), service("both-refs", 1, 80, true)];
        let invalid = verdicts.invalid(&objects);
        assert_eq!(invalid.keys().collect::<Vec<_>>(), [&("n".to_owned(), "both-refs".to_owned())]);
        let message = invalid.values().next().unwrap().to_string();
        assert!(message.contains("exactly one of vpcAttachmentRef or vpcAttachmentSelector"), "{message}");
    }

    #[test]
    fn a_verdict_is_kept_per_generation_and_redone_when_the_spec_changes() {
        let verdicts = Verdicts::for_router_kinds().unwrap();
        assert_eq!(verdicts.invalid(&[service("s", 1, 80, true)]).len(), 1);
        // The same generation is not judged again (a spec change always brings a new one).
        assert_eq!(verdicts.invalid(&[service("s", 1, 80, false)]).len(), 1);
        // A new generation fixed the spec: judged again.
        assert!(verdicts.invalid(&[service("s", 2, 80, false)]).is_empty());
        // An object without a uid is known by its name.
        let mut unnamed = service("t", 1, 80, true);
        unnamed.metadata.uid = None;
        assert_eq!(verdicts.invalid(&[unnamed]).keys().collect::<Vec<_>>(), [&("n".to_owned(), "t".to_owned())]);
        // Deleted objects are forgotten.
        assert!(verdicts.invalid::<VPCService>([]).is_empty());
        assert!(verdicts.seen.lock().unwrap()["VPCService"].by_id.is_empty());
    }

    #[test]
    fn json_pointers_become_dotted_field_paths() {
        assert_eq!(dotted("/spec/destinations/0/weight"), "spec.destinations[0].weight");
        assert_eq!(dotted(""), "<root>");
    }
}
