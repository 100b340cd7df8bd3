//! Weighted random choice, used for targets within a model and keys within a provider.

/// Picks an index with probability proportional to its weight. `total` must be the sum of the
/// weights and non-zero; a single candidate costs no random number.
pub fn weighted<T>(items: &[T], total: u32, weight: impl Fn(&T) -> u32) -> Option<usize> {
    match items.len() {
        0 => None,
        1 => Some(0),
        _ => {
            let mut r = fastrand::u32(0..total.max(1));
            for (i, item) in items.iter().enumerate() {
                let w = weight(item);
                if r < w {
                    return Some(i);
                }
                r -= w;
            }
            Some(items.len() - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_weights() {
        let w = [3u32, 1];
        let mut counts = [0u32; 2];
        for _ in 0..20_000 {
            counts[weighted(&w, 4, |x| *x).unwrap()] += 1;
        }
        let share = counts[0] as f64 / 20_000.0;
        assert!((0.70..0.80).contains(&share), "share {share}");
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(weighted::<u32>(&[], 0, |x| *x), None);
        assert_eq!(weighted(&[5u32], 5, |x| *x), Some(0));
    }
}
