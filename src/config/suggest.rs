//! "Did you mean" suggestions for misspelt names (config fields, provider ids, model names).
//!
//! Also used on the request path for "unknown model" 404s, so it avoids per-candidate
//! allocation beyond two small DP rows and skips candidates that cannot be close.

/// Most suggestions returned; more than this is noise.
const MAX_SUGGESTIONS: usize = 3;

/// Candidates close to `input`, best first, at most three, each listed once.
///
/// Comparison is ASCII case-insensitive. A candidate is close when its edit distance is small
/// relative to the longer name, or when one name contains the other (`gpt4` vs `gpt-4o`
/// does not, but `gpt-4o` vs `gpt-4o-mini` does).
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let needle: Vec<char> = input.chars().map(|c| c.to_ascii_lowercase()).collect();
    if needle.is_empty() {
        return Vec::new();
    }
    let mut scratch = Scratch::default();
    // (distance, containment penalty, arrival order, name)
    let mut hits: Vec<(usize, bool, usize, &'a str)> = Vec::new();
    for (order, cand) in candidates.into_iter().enumerate() {
        if hits.iter().any(|h| h.3 == cand) {
            continue;
        }
        if let Some((dist, contained)) = closeness(&needle, cand, &mut scratch) {
            hits.push((dist, !contained, order, cand));
        }
    }
    hits.sort_unstable();
    hits.into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|h| h.3.to_string())
        .collect()
}

/// ` (did you mean "x"?)` for the best match, or an empty string: ready to append to a message.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(input, candidates).first() {
        Some(best) => format!(" (did you mean {best:?}?)"),
        None => String::new(),
    }
}

#[derive(Default)]
struct Scratch {
    cand: Vec<char>,
    rows: [Vec<usize>; 3],
}

/// `Some((edit distance, one contains the other))` when `cand` is close to `needle`.
fn closeness(needle: &[char], cand: &str, s: &mut Scratch) -> Option<(usize, bool)> {
    s.cand.clear();
    s.cand.extend(cand.chars().map(|c| c.to_ascii_lowercase()));
    let (a, b) = (needle, s.cand.as_slice());
    if b.is_empty() {
        return None;
    }
    // Containment only counts for inputs long enough to mean something ("a" is in everything).
    let contained = a.len().min(b.len()) >= 3 && (contains(a, b) || contains(b, a));
    // Roughly one typo per three characters, at least one.
    let limit = (a.len().max(b.len()) / 3).max(1);
    if !contained && a.len().abs_diff(b.len()) > limit {
        return None; // the distance is at least the length difference
    }
    let dist = edit_distance(a, b, &mut s.rows);
    (contained || dist <= limit).then_some((dist, contained))
}

fn contains(hay: &[char], needle: &[char]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, the most
/// common typo (`kidn` for `kind`), at cost 1.
pub(super) fn edit_distance(a: &[char], b: &[char], rows: &mut [Vec<usize>; 3]) -> usize {
    let [before, prev, cur] = rows;
    before.clear();
    prev.clear();
    prev.extend(0..=b.len());
    for (i, ca) in a.iter().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            let mut best = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                best = best.min(before[j - 1] + 1);
            }
            cur.push(best);
        }
        // Rotate rows: before <- prev <- cur, reusing the oldest allocation for the next row.
        std::mem::swap(before, prev);
        std::mem::swap(prev, cur);
    }
    prev[b.len()]
}
