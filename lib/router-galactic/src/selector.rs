use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions operator {0:?} is not In, NotIn, Exists or DoesNotExist")]
    Operator(String),
    #[error("matchExpressions operator {0} on key {1:?} needs values")]
    MissingValues(String, String),
}

/// Whether `labels` satisfy `selector`, with Kubernetes semantics: every
/// matchLabels pair and every matchExpression must hold; an empty selector
/// matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> Result<bool, SelectorError> {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for expr in selector.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or_default();
        let needs_values = || {
            if values.is_empty() { Err(SelectorError::MissingValues(expr.operator.clone(), expr.key.clone())) } else { Ok(()) }
        };
        let holds = match expr.operator.as_str() {
            "In" => {
                needs_values()?;
                value.is_some_and(|v| values.contains(v))
            }
            "NotIn" => {
                needs_values()?;
                value.is_none_or(|v| !values.contains(v))
            }
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(SelectorError::Operator(other.to_owned())),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement { key: key.into(), operator: op.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }
    }

    #[test]
    fn match_labels_and_expressions_all_hold() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "api")])),
            match_expressions: Some(vec![expr("cloud", "In", &["aws", "gcp"]), expr("canary", "DoesNotExist", &[])]),
        };
        assert!(selector_matches(&sel, Some(&labels(&[("app", "api"), ("cloud", "aws")]))).unwrap());
        assert!(!selector_matches(&sel, Some(&labels(&[("app", "api"), ("cloud", "azure")]))).unwrap());
        assert!(!selector_matches(&sel, Some(&labels(&[("app", "api"), ("cloud", "aws"), ("canary", "1")]))).unwrap());
        assert!(!selector_matches(&sel, None).unwrap());
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(selector_matches(&LabelSelector::default(), None).unwrap());
    }

    #[test]
    fn bad_operators_are_errors_not_silent_misses() {
        let sel = LabelSelector { match_expressions: Some(vec![expr("a", "Near", &["b"])]), ..Default::default() };
        assert_eq!(selector_matches(&sel, None), Err(SelectorError::Operator("Near".into())));
        let sel = LabelSelector { match_expressions: Some(vec![expr("a", "In", &[])]), ..Default::default() };
        assert!(matches!(selector_matches(&sel, None), Err(SelectorError::MissingValues(..))));
    }
}
