//! Model-name globs: `*` matches any run of characters, `?` exactly one.

/// Whether `name` contains glob metacharacters.
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// Matches `text` against `pattern` in linear time (greedy `*` with one backtrack point).
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) && p[pi] != b'*' {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("claude-*", "claude-sonnet-4-5"));
        assert!(matches("claude-*", "claude-"));
        assert!(!matches("claude-*", "claud"));
        assert!(matches("gpt-4o*", "gpt-4o"));
        assert!(matches("gpt-4o*", "gpt-4o-mini"));
        assert!(matches("*-mini", "gpt-4o-mini"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("gpt-?", "gpt-4"));
        assert!(!matches("gpt-?", "gpt-45"));
        assert!(matches("*", ""));
    }
}
