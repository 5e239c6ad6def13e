//! Bindings to Datum's `networking.datumapis.com/v1alpha` Location, read-only,
//! and the locality vocabulary the router shares with Kubernetes: where an
//! endpoint or a gateway is (region, zone, Datum city code).
//!
//! Like the Galactic bindings, `Location` mirrors Datum's CRD field for field
//! (`locationClassName`, `topology`, `provider`, `coordinates`) so whatever
//! Datum writes deserialises; nothing here generates a CRD.

mod location;

pub use location::{GcpProvider, Location, LocationCoordinates, LocationProvider, LocationSpec, LocationStatus};

/// The API group.
pub const GROUP: &str = "networking.datumapis.com";
/// The version this project reads.
pub const VERSION: &str = "v1alpha";

/// The Kubernetes well-known region key (node labels, Location topology, attachment labels).
pub const REGION_KEY: &str = "topology.kubernetes.io/region";
/// The Kubernetes well-known zone key.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";
/// Datum's city code key (three letters, e.g. DFW).
pub const CITY_CODE_KEY: &str = "topology.datum.net/city-code";
/// The VPCAttachment label naming its Location: `<namespace>/<name>`, or `<name>` in the attachment's namespace.
pub const LOCATION_LABEL: &str = "networking.datumapis.com/location";

/// Where something is; each part is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    pub region: Option<String>,
    pub zone: Option<String>,
    pub city_code: Option<String>,
}

/// A `--locality` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("locality {0:?}: expected comma-separated region=…, zone=…, city-code=… (each optional, each at most once)")]
pub struct LocalityParseError(String);

impl Locality {
    /// Reads the well-known keys from a label or topology map.
    pub fn from_map<'a>(get: impl Fn(&str) -> Option<&'a String>) -> Self {
        Self { region: get(REGION_KEY).cloned(), zone: get(ZONE_KEY).cloned(), city_code: get(CITY_CODE_KEY).cloned() }
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_none() && self.zone.is_none() && self.city_code.is_none()
    }

    /// Each part this one lacks, taken from `other`.
    pub fn or(self, other: Locality) -> Self {
        Self { region: self.region.or(other.region), zone: self.zone.or(other.zone), city_code: self.city_code.or(other.city_code) }
    }

    /// Parses `region=us-central1,zone=us-central1-a,city-code=DFW` (the gateway's `--locality`).
    pub fn parse(text: &str) -> Result<Self, LocalityParseError> {
        let mut out = Self::default();
        let bad = || LocalityParseError(text.to_owned());
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad());
            }
            let slot = match key.trim() {
                "region" => &mut out.region,
                "zone" => &mut out.zone,
                "city-code" | "cityCode" => &mut out.city_code,
                _ => return Err(bad()),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(bad());
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [("region", &self.region), ("zone", &self.zone), ("city-code", &self.city_code)];
        let text: Vec<String> = parts.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
        f.write_str(&text.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_form_parses_and_prints_back() {
        let l = Locality::parse("region=us-central1, zone=us-central1-a,city-code=DFW").unwrap();
        assert_eq!(l.region.as_deref(), Some("us-central1"));
        assert_eq!(l.zone.as_deref(), Some("us-central1-a"));
        assert_eq!(l.city_code.as_deref(), Some("DFW"));
        assert_eq!(l.to_string(), "region=us-central1,zone=us-central1-a,city-code=DFW");
        assert_eq!(Locality::parse("").unwrap(), Locality::default());
        for bad in ["zone", "zone=", "planet=earth", "zone=a,zone=b"] {
            assert!(Locality::parse(bad).is_err(), "{bad}");
        }
    }
}
