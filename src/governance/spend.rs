//! Spend on its way to the store: each charged attempt pushes one row onto a lock-free queue
//! (the request path's only cost), and the writer drains it in batches, adding up rows of the
//! same hour, key, team, customer, model and provider before writing.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_queue::SegQueue;

/// One attempt's spend, or the sum of several of the same group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// The hour it ended in (Unix seconds, a multiple of 3600).
    pub hour: i64,
    pub key_id: Arc<str>,
    pub team_id: Option<Arc<str>>,
    pub customer_id: Option<Arc<str>>,
    pub model: Arc<str>,
    /// The serving target's `provider/model` label (or `provider`): the provider is the
    /// part before the first `/` (split when written, not on the request path).
    pub target: Arc<str>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Cost in 10⁻⁸ USD (exact integer sums).
    pub units: u64,
    /// Requests served by a model with no known price (their cost is unknown, not 0).
    pub unpriced: u64,
}

/// A group by the addresses of its strings: they are the long-lived `Arc`s of the governance
/// table and the route metrics, so one group is almost always one set of addresses, and
/// hashing six words is much cheaper than hashing the strings (rows of the same strings under
/// other addresses are separate here and added up by the store's upsert).
type Group = (i64, [usize; 5]);

fn addr(s: &Arc<str>) -> usize {
    Arc::as_ptr(s).cast::<u8>() as usize
}

#[derive(Debug, Default)]
pub struct SpendQueue {
    rows: SegQueue<SpendRow>,
}

impl SpendRow {
    pub fn provider(&self) -> &str {
        self.target.split('/').next().unwrap_or(&self.target)
    }
}

impl SpendQueue {
    pub fn push(&self, row: SpendRow) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Everything queued so far, added up by group.
    pub fn drain(&self) -> Vec<SpendRow> {
        // Addresses are not chosen by clients: a fast hasher is safe here.
        let mut groups: HashMap<Group, SpendRow, foldhash::fast::RandomState> = HashMap::default();
        while let Some(r) = self.rows.pop() {
            let g = (
                r.hour,
                [
                    addr(&r.key_id),
                    r.team_id.as_ref().map_or(0, addr),
                    r.customer_id.as_ref().map_or(0, addr),
                    addr(&r.model),
                    addr(&r.target),
                ],
            );
            match groups.get_mut(&g) {
                Some(sum) => {
                    sum.requests += r.requests;
                    sum.input_tokens += r.input_tokens;
                    sum.output_tokens += r.output_tokens;
                    sum.cached_tokens += r.cached_tokens;
                    sum.units += r.units;
                    sum.unpriced += r.unpriced;
                }
                None => {
                    groups.insert(g, r);
                }
            }
        }
        groups.into_values().collect()
    }

    /// Puts rows back (a write failed; they go with the next batch).
    pub fn requeue(&self, rows: Vec<SpendRow>) {
        for r in rows {
            self.rows.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &Arc<str>, model: &Arc<str>, units: u64) -> SpendRow {
        SpendRow {
            hour: 3600,
            key_id: Arc::clone(key),
            team_id: None,
            customer_id: None,
            model: Arc::clone(model),
            target: Arc::clone(model),
            requests: 1,
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 0,
            units,
            unpriced: 0,
        }
    }

    #[test]
    fn rows_of_one_group_are_added_up_exactly() {
        let (k1, k2, m): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("k1"), Arc::from("k2"), Arc::from("mock/m"));
        let q = SpendQueue::default();
        q.push(row(&k1, &m, 7));
        q.push(row(&k1, &m, 11));
        q.push(row(&k2, &m, 1));
        let mut rows = q.drain();
        rows.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].requests, rows[0].units, rows[0].input_tokens),
            (2, 18, 20)
        );
        assert_eq!(rows[1].units, 1);
        assert_eq!(rows[1].provider(), "mock");
        assert!(q.is_empty());
        // The same strings under other addresses are rows of their own (the store adds them).
        q.push(row(&k1, &m, 1));
        q.push(row(&Arc::from("k1"), &m, 1));
        assert_eq!(q.drain().len(), 2);
    }
}
