//! How many forwards may be hedged: a token bucket shared by every request of a node.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bounds the share of forwards that get a hedged copy: each forward earns a tenth of a token,
/// a hedge spends one, and at most ten are saved up. Under a slow mesh, at most about one
/// forward in ten is sent twice.
#[derive(Debug, Default)]
pub(crate) struct HedgeBudget {
    milli_tokens: AtomicU64,
}

impl HedgeBudget {
    const EARN: u64 = 100;
    const COST: u64 = 1_000;
    const CAP: u64 = 10_000;

    pub(crate) fn earn(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + Self::EARN).min(Self::CAP))
            });
    }

    pub(crate) fn try_spend(&self) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(Self::COST)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::HedgeBudget;

    #[test]
    fn hedges_are_at_most_a_tenth_of_forwards_beyond_a_small_burst() {
        let budget = HedgeBudget::default();
        let mut hedges = 0;
        for _ in 0..1_000 {
            budget.earn();
            if budget.try_spend() {
                hedges += 1;
            }
        }
        assert_eq!(hedges, 100);
        // Saved up while nothing was slow: a burst of at most ten.
        for _ in 0..1_000 {
            budget.earn();
        }
        let burst = (0..100).filter(|_| budget.try_spend()).count();
        assert_eq!(burst, 10);
    }
}
