//! Locality-aware picking (`trafficDistribution: PreferClose`): endpoints are
//! grouped into priority levels by their distance from the gateway — same
//! zone, same city, same region, anywhere — and traffic goes to the nearest
//! level that has enough healthy capacity, spilling over gradually.
//!
//! The spill-over rule is Envoy's priority load with its overprovisioning
//! factor of 1.4: a level's availability is `min(1, 1.4 × healthy / total)`,
//! so a level keeps its full share while at least 1/1.4 (≈ 71 %) of its
//! endpoints are healthy and sheds the rest proportionally. Levels take their
//! availability in order of distance until the shares add up to 1; when even
//! all levels together are below 1, the shares are scaled up by the total, so
//! traffic still all goes somewhere and the healthier levels take more. When
//! no endpoint is healthy anywhere (panic mode), the nearest non-empty level
//! takes everything, health ignored: a health checker that is wrong about
//! everything must not send a city's traffic across an ocean.
//!
//! "Healthy" is what the picker's own checks say: active health checks,
//! readiness (only ready endpoints are here at all) and outlier ejection (an
//! endpoint whose breaker is open counts as unhealthy for its level's share).

use router_api::datum::Locality;

/// Envoy's default overprovisioning factor.
pub const OVERPROVISIONING: f64 = 1.4;

/// An endpoint's distance from the gateway, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Zone,
    City,
    Region,
    Any,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Zone, Level::City, Level::Region, Level::Any];

    pub fn label(self) -> &'static str {
        match self {
            Self::Zone => "zone",
            Self::City => "city",
            Self::Region => "region",
            Self::Any => "any",
        }
    }

    /// How far `endpoint` is from a gateway at `gateway`. A zone is the same
    /// zone only within the same region when both name one (zone names repeat
    /// across providers).
    pub fn of(gateway: &Locality, endpoint: &Locality) -> Self {
        let same = |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a == b);
        let regions_agree = gateway.region.is_none() || endpoint.region.is_none() || same(&gateway.region, &endpoint.region);
        if same(&gateway.zone, &endpoint.zone) && regions_agree {
            Self::Zone
        } else if same(&gateway.city_code, &endpoint.city_code) {
            Self::City
        } else if same(&gateway.region, &endpoint.region) {
            Self::Region
        } else {
            Self::Any
        }
    }
}

/// Each level's share of the traffic, from its (healthy, total) endpoint
/// counts, nearest first; None when no level has a healthy endpoint (panic).
pub fn shares(counts: &[(usize, usize); 4]) -> Option<[f64; 4]> {
    let availability =
        counts.map(|(healthy, total)| if total == 0 { 0.0 } else { (OVERPROVISIONING * healthy as f64 / total as f64).min(1.0) });
    let sum: f64 = availability.iter().sum();
    if sum <= 0.0 {
        return None;
    }
    let scale = sum.min(1.0);
    let mut left = 1.0_f64;
    let mut out = [0.0; 4];
    for (share, a) in out.iter_mut().zip(availability) {
        *share = (a / scale).min(left);
        left -= *share;
    }
    Some(out)
}

/// A destination's endpoints grouped by level, for a gateway at one locality.
#[derive(Debug, Clone, Default)]
pub struct Levels {
    /// Endpoint indexes of each level, ascending.
    members: [Vec<usize>; 4],
}

impl Levels {
    /// `endpoints[i]` is where endpoint `i` is.
    pub fn new(gateway: &Locality, endpoints: &[Locality]) -> Self {
        let mut members: [Vec<usize>; 4] = Default::default();
        for (i, e) in endpoints.iter().enumerate() {
            members[Level::of(gateway, e) as usize].push(i);
        }
        Self { members }
    }

    pub fn members(&self, level: Level) -> &[usize] {
        &self.members[level as usize]
    }

    /// Endpoints per level, nearest first (for /config and status).
    pub fn sizes(&self) -> [usize; 4] {
        [0, 1, 2, 3].map(|i| self.members[i].len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(region: &str, zone: &str, city: &str) -> Locality {
        let part = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Locality { region: part(region), zone: part(zone), city_code: part(city) }
    }

    #[test]
    fn levels_follow_zone_city_region_then_any() {
        let gw = at("us-south1", "us-south1-a", "DFW");
        assert_eq!(Level::of(&gw, &at("us-south1", "us-south1-a", "")), Level::Zone);
        assert_eq!(Level::of(&gw, &at("", "us-south1-a", "")), Level::Zone, "no region named: the zone decides");
        assert_eq!(Level::of(&gw, &at("eu-west1", "us-south1-a", "")), Level::Any, "a zone name in another region is not the same zone");
        assert_eq!(Level::of(&gw, &at("us-south1", "us-south1-b", "DFW")), Level::City);
        assert_eq!(Level::of(&gw, &at("us-south1", "us-south1-c", "")), Level::Region);
        assert_eq!(Level::of(&gw, &at("", "", "")), Level::Any, "an endpoint nowhere in particular");
        assert_eq!(Level::of(&Locality::default(), &at("us-south1", "us-south1-a", "DFW")), Level::Any, "a gateway nowhere");
    }

    fn close(a: [f64; 4], b: [f64; 4]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn ten_endpoints_in_three_levels_spill_over_by_the_overprovisioning_rule() {
        // zone: 4 endpoints, region: 4, any: 2; (unhealthy in zone, unhealthy in region, unhealthy in any) → shares.
        // (unhealthy in zone, in region, in any) → shares
        type Case = ((usize, usize, usize), Option<[f64; 4]>);
        let table: &[Case] = &[
            ((0, 0, 0), Some([1.0, 0.0, 0.0, 0.0])),
            ((1, 0, 0), Some([1.0, 0.0, 0.0, 0.0])), // 3/4 × 1.4 = 1.05: still the full share
            ((2, 0, 0), Some([0.7, 0.0, 0.3, 0.0])), // 2/4 × 1.4 = 0.7; the rest to the next level
            ((3, 0, 0), Some([0.35, 0.0, 0.65, 0.0])),
            ((4, 0, 0), Some([0.0, 0.0, 1.0, 0.0])),
            ((4, 2, 0), Some([0.0, 0.0, 0.7, 0.3])),
            ((2, 2, 0), Some([0.7, 0.0, 0.3, 0.0])), // the region at 0.7 still covers the zone's missing 0.3
            ((3, 3, 1), Some([0.35, 0.0, 0.35, 0.3])), // 1.05 in all: the farthest level gets what is left
            ((3, 3, 2), Some([0.5, 0.0, 0.5, 0.0])), // 0.7 in all: scaled up by it
            ((4, 4, 2), None),                       // panic
        ];
        for &((zone_down, region_down, any_down), want) in table {
            let counts = [(4 - zone_down, 4), (0, 0), (4 - region_down, 4), (2 - any_down, 2)];
            let got = shares(&counts);
            match (got, want) {
                (Some(g), Some(w)) => assert!(close(g, w), "{counts:?}: {g:?} ≠ {w:?}"),
                (g, w) => assert_eq!(g, w, "{counts:?}"),
            }
            if let Some(g) = got {
                assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{counts:?}: shares add up to 1");
            }
        }
    }

    #[test]
    fn levels_group_endpoint_indexes() {
        let gw = at("r", "z", "");
        let levels = Levels::new(&gw, &[at("r", "z", ""), at("x", "", ""), at("r", "y", ""), at("r", "z", "")]);
        assert_eq!(levels.members(Level::Zone), &[0, 3]);
        assert_eq!(levels.members(Level::Region), &[2]);
        assert_eq!(levels.members(Level::Any), &[1]);
        assert_eq!(levels.sizes(), [2, 0, 1, 1]);
    }
}
