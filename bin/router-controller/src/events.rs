//! Kubernetes Events for condition changes, so `kubectl describe` tells the
//! story: a Warning when a condition turns False (with its reason and
//! message), a Normal event when it recovers. A condition that starts out True
//! says nothing; one that stays as it was says nothing again.

use serde_json::Value;

/// One condition change worth an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

fn status_of<'a>(conditions: &'a Value, type_: &str) -> Option<&'a str> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)?.get("status")?.as_str()
}

/// The transitions from `stored` to `desired` (both `conditions` arrays, or null).
pub fn transitions(stored: &Value, desired: &Value) -> Vec<Transition> {
    let Some(desired) = desired.as_array() else { return Vec::new() };
    desired
        .iter()
        .filter_map(|c| {
            let (type_, status) = (c["type"].as_str()?, c["status"].as_str()?);
            let before = status_of(stored, type_);
            let event = match (before, status) {
                (Some(b), s) if b == s => return None,
                (_, "False") => true,
                (Some(_), "True") => false,
                _ => return None,
            };
            Some(Transition {
                warning: event,
                reason: c["reason"].as_str().unwrap_or_default().to_owned(),
                note: format!("{type_}: {}", c["message"].as_str().unwrap_or_default()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn warnings_on_false_normal_on_recovery_silence_otherwise() {
        let c = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "reason": r, "message": "m"});
        let stored =
            json!([c("Accepted", "True", "Accepted"), c("ResolvedRefs", "False", "RefNotFound"), c("Programmed", "True", "Programmed")]);
        let desired =
            json!([c("Accepted", "True", "Accepted"), c("ResolvedRefs", "True", "ResolvedRefs"), c("Programmed", "False", "Shadowed")]);
        let t = transitions(&stored, &desired);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].warning, t[0].reason.as_str(), t[0].note.as_str()), (false, "ResolvedRefs", "ResolvedRefs: m"));
        assert_eq!((t[1].warning, t[1].reason.as_str()), (true, "Shadowed"));
        let first = transitions(&Value::Null, &json!([c("Accepted", "True", "Accepted"), c("Ready", "False", "NoReadyEndpoints")]));
        assert_eq!(first.len(), 1, "a new True condition is not news; a new False one is");
        assert!(first[0].warning);
    }
}
