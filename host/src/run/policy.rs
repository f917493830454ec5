//! Rollout policy: how the steps of a phase are spread over time. Canaries
//! go first and alone; then batches of `serial` steps, each batch finished
//! before the next starts, at most `max_in_flight` at once; and one failure
//! budget (`max_fail`) for the whole run, not per batch.

use std::str::FromStr;

/// A count, or a percentage of the run's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(usize),
    Percent(u8),
}

impl FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Amount, String> {
        let bad = || format!("`{s}` is neither a count (3) nor a percentage (25%)");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Amount::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(Amount::Count).map_err(|_| bad()),
        }
    }
}

impl Amount {
    /// The amount out of `total`; a percentage rounds down.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => total * p as usize / 100,
        }
    }
}

/// How a run's steps are rolled out.
#[derive(Debug, Clone, Copy)]
pub struct RolloutPolicy {
    /// Steps per batch; `None`: the whole phase in one batch.
    pub serial: Option<usize>,
    /// Most steps running at once.
    pub max_in_flight: Amount,
    /// Steps run first, alone; any failure among them halts the run.
    pub canaries: usize,
    /// Nodes with a failed or unreachable step the whole run may absorb
    /// and go on.
    pub max_fail: Amount,
}

impl Default for RolloutPolicy {
    fn default() -> RolloutPolicy {
        RolloutPolicy {
            serial: None,
            max_in_flight: Amount::Count(16),
            canaries: 0,
            max_fail: Amount::Count(0),
        }
    }
}

impl RolloutPolicy {
    /// Split `n` steps into batches of indices: canaries first, then
    /// `serial`-sized batches.
    pub fn batches(&self, n: usize) -> Vec<Vec<usize>> {
        let mut batches = Vec::new();
        let canaries = self.canaries.min(n);
        if canaries > 0 {
            batches.push((0..canaries).collect());
        }
        let size = self.serial.unwrap_or(n).max(1);
        let rest: Vec<usize> = (canaries..n).collect();
        batches.extend(rest.chunks(size).map(<[usize]>::to_vec));
        batches
    }

    /// Most steps at once in a phase of `n` steps (at least one).
    pub fn in_flight(&self, n: usize) -> usize {
        self.max_in_flight.of(n).max(1)
    }

    /// The failure budget for a run over `nodes` nodes: how many of them
    /// may have a failed step (all of them at 100%).
    pub fn budget(&self, nodes: usize) -> usize {
        self.max_fail.of(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amounts() {
        assert_eq!("3".parse(), Ok(Amount::Count(3)));
        assert_eq!("25%".parse(), Ok(Amount::Percent(25)));
        assert!("150%".parse::<Amount>().is_err());
        assert!("many".parse::<Amount>().is_err());
        assert_eq!(Amount::Percent(25).of(10), 2);
    }

    #[test]
    fn canaries_then_serial_batches() {
        let p = RolloutPolicy {
            serial: Some(2),
            canaries: 1,
            ..Default::default()
        };
        assert_eq!(p.batches(6), vec![vec![0], vec![1, 2], vec![3, 4], vec![5]]);
        let all = RolloutPolicy::default();
        assert_eq!(all.batches(3), vec![vec![0, 1, 2]]);
        assert_eq!(all.batches(0), Vec::<Vec<usize>>::new());
    }
}
