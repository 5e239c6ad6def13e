//! Splitting a route's traffic across destinations by weight with smooth
//! weighted round robin (nginx's algorithm): every pick adds each weight to
//! its running score and takes the highest, which then pays back the total.
//! Over any window of `sum(weights)` picks each destination gets exactly its
//! share, interleaved rather than in bursts (5:1:1 gives a a b a c a a).

use std::sync::Mutex;

#[derive(Debug)]
pub struct WeightedSplit {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

impl WeightedSplit {
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
        Self { total: weights.iter().sum(), current: Mutex::new(vec![0; weights.len()]), weights }
    }

    /// The index of the next destination, or None when every weight is 0.
    pub fn pick(&self) -> Option<usize> {
        match self.weights.len() {
            0 => return None,
            1 => return (self.total > 0).then_some(0),
            _ if self.total == 0 => return None,
            _ => {}
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut best = 0;
        for (i, w) in self.weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= self.total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_shares_smoothly_interleaved() {
        let s = WeightedSplit::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| s.pick().unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        let s = WeightedSplit::new(&[90, 10]);
        let mut c = [0; 2];
        for _ in 0..1000 {
            c[s.pick().unwrap()] += 1;
        }
        assert_eq!(c, [900, 100]);
    }

    #[test]
    fn zero_weight_gets_nothing_and_all_zero_gets_none() {
        let s = WeightedSplit::new(&[0, 3]);
        assert!((0..10).all(|_| s.pick() == Some(1)));
        assert_eq!(WeightedSplit::new(&[0, 0]).pick(), None);
        assert_eq!(WeightedSplit::new(&[]).pick(), None);
    }
}
