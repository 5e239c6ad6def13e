//! The YAML documents of the last standalone load, parsed and validated, by
//! their text. A reload parses and validates only documents whose text
//! changed: parsing and schema validation are most of a reload's cost (about
//! 4 s of a 10,000-route file), so a change of one route costs one
//! document's parse, not the file's. Unchanged documents cost a lookup by
//! their text and a clone of their objects, in which VPCRoutes and
//! VPCServices are shared `Arc`s: the snapshot builder finds those of
//! unchanged documents by address and reuses what it compiled from them.
//!
//! A document's text is cut at `---` lines. Any document that fails sends the
//! whole file through the parser again, so the error names the line and
//! document exactly as a cold load would; a file with YAML directives (`%`
//! lines) always goes through whole.

use std::{collections::HashMap, sync::Arc};

use router_api::{
    manifest::{ManifestError, Object, parse_documents},
    schema::SchemaValidator,
};

/// Parsed documents by text: those of the last successful load.
#[derive(Default)]
pub struct Documents {
    last: HashMap<Box<str>, Arc<[Object]>>,
    next: HashMap<Box<str>, Arc<[Object]>>,
    /// Documents parsed (not found) in the load under way, for the log.
    pub parsed: usize,
    pub reused: usize,
}

impl Documents {
    /// Starts a load.
    pub fn begin(&mut self) {
        self.next.clear();
        self.parsed = 0;
        self.reused = 0;
    }

    /// The objects of `text` (one file, `origin` in errors).
    pub fn objects(&mut self, text: &str, origin: &str, schemas: &SchemaValidator) -> Result<Vec<Object>, ManifestError> {
        let Some(documents) = split(text) else {
            self.parsed += 1;
            return parse_documents(text, origin, schemas);
        };
        let mut objects = Vec::new();
        for doc in documents {
            if let Some(found) = self.next.get(doc).or_else(|| self.last.get(doc)).cloned() {
                self.reused += 1;
                objects.extend(found.iter().cloned());
                self.next.insert(doc.into(), found);
                continue;
            }
            match parse_documents(doc, origin, schemas) {
                Ok(parsed) => {
                    self.parsed += 1;
                    objects.extend(parsed.iter().cloned());
                    self.next.insert(doc.into(), parsed.into());
                }
                // Parsed alone, a document's error has the wrong line and document numbers.
                Err(e) => return parse_documents(text, origin, schemas).and(Err(e)),
            }
        }
        Ok(objects)
    }

    /// Ends a load that succeeded: its documents are the ones to reuse next time.
    /// (After a failed load the previous ones are kept.)
    pub fn commit(&mut self) {
        std::mem::swap(&mut self.last, &mut self.next);
        self.next.clear();
    }
}

/// `text` cut into documents at `---` lines (each document keeps its marker
/// line), or None when it has directives, which apply across documents.
fn split(text: &str) -> Option<Vec<&str>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with('%') {
            return None;
        }
        let marker = line.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if marker && at > start {
            documents.push(&text[start..at]);
            start = at;
        }
        at += line.len();
    }
    if at > start {
        documents.push(&text[start..]);
    }
    Some(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> String {
        format!(
            "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: {name}}}\n\
             spec: {{vpcAttachmentRef: {{name: att}}, port: 80, protocol: HTTP}}\n"
        )
    }

    #[test]
    fn documents_are_cut_at_marker_lines_only() {
        let text = "a: 1\n---\nb: |\n  ---\n  text\n--- # c\nc: 3\n----\n";
        assert_eq!(split(text).unwrap(), ["a: 1\n", "---\nb: |\n  ---\n  text\n", "--- # c\nc: 3\n----\n"]);
        assert_eq!(split("---\na: 1\n").unwrap(), ["---\na: 1\n"]);
        assert!(split("%YAML 1.2\n---\na: 1\n").is_none());
    }

    #[test]
    fn a_reload_parses_only_the_documents_that_changed() {
        let schemas = SchemaValidator::for_router_kinds().unwrap();
        let mut docs = Documents::default();
        let file = |names: &[&str]| names.iter().map(|n| format!("---\n{}", service(n))).collect::<String>();
        docs.begin();
        let first = docs.objects(&file(&["a", "b", "c"]), "f.yaml", &schemas).unwrap();
        docs.commit();
        assert_eq!((first.len(), docs.parsed, docs.reused), (3, 3, 0));

        docs.begin();
        let second = docs.objects(&file(&["a", "B", "c"]), "f.yaml", &schemas).unwrap();
        docs.commit();
        assert_eq!((second.len(), docs.parsed, docs.reused), (3, 1, 2));
        let names: Vec<String> = second
            .iter()
            .map(|o| match o {
                Object::VpcService(s) => s.metadata.name.clone().unwrap(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a", "B", "c"], "in the file's order");
    }

    #[test]
    fn an_error_reads_as_a_cold_loads_error_and_the_last_good_documents_stay() {
        let schemas = SchemaValidator::for_router_kinds().unwrap();
        let mut docs = Documents::default();
        let good = format!("---\n{}---\n{}", service("a"), service("b"));
        docs.begin();
        docs.objects(&good, "f.yaml", &schemas).unwrap();
        docs.commit();

        let bad = format!("---\n{}---\n{}", service("a"), service("b").replace("port: 80", "port: 0"));
        docs.begin();
        let warm = docs.objects(&bad, "f.yaml", &schemas).unwrap_err().to_string();
        let cold = parse_documents(&bad, "f.yaml", &schemas).unwrap_err().to_string();
        assert_eq!(warm, cold);

        docs.begin();
        docs.objects(&good, "f.yaml", &schemas).unwrap();
        assert_eq!((docs.parsed, docs.reused), (0, 2), "the failed load did not drop the good documents");
    }
}
