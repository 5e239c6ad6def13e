use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::Locality;

/// A Datum Location: a place workloads run in, with its topology keys.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "networking.datumapis.com",
    version = "v1alpha",
    kind = "Location",
    plural = "locations",
    singular = "location",
    namespaced,
    status = "LocationStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct LocationSpec {
    /// datum-managed or self-managed.
    pub location_class_name: String,
    /// Arbitrary topology keys; the well-known ones are read (topology.datum.net/city-code,
    /// topology.kubernetes.io/region and /zone).
    #[serde(default)]
    pub topology: BTreeMap<String, String>,
    pub provider: LocationProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<LocationCoordinates>,
}

/// The location's provider: GCP today; others are kept as they came.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocationProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpProvider>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcpProvider {
    pub project_id: String,
    pub region: String,
    pub zone: String,
}

/// Decimal degrees, as strings (the CRD's own form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationCoordinates {
    pub latitude: String,
    pub longitude: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocationStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Location {
    /// The topology keys, with the GCP provider's region and zone where the topology has none.
    pub fn locality(&self) -> Locality {
        let topology = Locality::from_map(|k| self.spec.topology.get(k));
        let provider = self.spec.provider.gcp.as_ref().map_or_else(Locality::default, |g| Locality {
            region: Some(g.region.clone()).filter(|r| !r.is_empty()),
            zone: Some(g.zone.clone()).filter(|z| !z.is_empty()),
            city_code: None,
        });
        topology.or(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_schema_deserialises_and_yields_its_locality() {
        let location: Location = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.datumapis.com/v1alpha",
            "kind": "Location",
            "metadata": {"name": "dfw", "namespace": "datum-system"},
            "spec": {
                "locationClassName": "datum-managed",
                "topology": {"topology.datum.net/city-code": "DFW"},
                "provider": {"gcp": {"projectId": "p", "region": "us-south1", "zone": "us-south1-a"}},
                "coordinates": {"latitude": "32.8998", "longitude": "-97.0403"}
            },
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .expect("Datum's Location");
        assert_eq!(
            location.locality(),
            Locality { region: Some("us-south1".into()), zone: Some("us-south1-a".into()), city_code: Some("DFW".into()) }
        );
        let round_trip: Location = serde_json::from_value(serde_json::to_value(&location).unwrap()).unwrap();
        assert_eq!((round_trip.spec, round_trip.status), (location.spec, location.status));
    }
}
