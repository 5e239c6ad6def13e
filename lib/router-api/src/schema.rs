//! Validation of untyped objects against the generated CRD schemas, the way
//! an API server would do it: the structural OpenAPI schema (types, enums,
//! ranges, patterns, required fields) and then the CEL
//! `x-kubernetes-validations` rules, evaluated with kube-cel on the object
//! with schema defaults applied.
//!
//! Standalone mode runs every router object through this before it is
//! accepted, so a file that a cluster would reject is rejected on a laptop
//! too, with the same field-named message.

use std::{collections::HashMap, fmt};

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
    openapi: Value,
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
            kinds.insert(crd.spec.names.kind.clone(), KindSchema { openapi, structural });
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
            && let Err(cel_errors) = self.cel.validate_with_defaults(&schema.openapi, object, None)
        {
            errors.extend(cel_errors.into_iter().map(|e| FieldError { field: e.field_path.clone(), message: e.message.clone() }));
        }
        if errors.is_empty() { Ok(()) } else { Err(InvalidObject(errors)) }
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
    use super::dotted;

    #[test]
    fn json_pointers_become_dotted_field_paths() {
        assert_eq!(dotted("/spec/destinations/0/weight"), "spec.destinations[0].weight");
        assert_eq!(dotted(""), "<root>");
    }
}
