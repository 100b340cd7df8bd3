use super::*;

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input,
        output,
        ..Usage::default()
    }
}

#[test]
fn the_builtin_table_parses_and_is_dated() {
    let date = builtin_date();
    assert_eq!(date.len(), 10, "{date}");
    assert!(date.starts_with("20"), "{date}");
    let table = PriceTable::builtin();
    let gpt4o = table.lookup("my-openai", "openai", "gpt-4o").unwrap();
    assert_eq!((gpt4o.input, gpt4o.output), (2.5, 10.0));
    assert_eq!(gpt4o.cache_read, Some(1.25));
}

#[test]
fn every_price_in_the_data_file_is_sane() {
    // Per million tokens: nothing here costs more than $200, and output is never cheaper than
    // a tenth of input (a table with a misplaced decimal point fails this).
    for (key, p) in &BUILTIN_FILE.prices {
        assert!(p.is_valid(), "{key}");
        assert!(p.input <= 200.0 && p.output <= 200.0, "{key}: {p:?}");
        if p.input > 0.0 && p.output > 0.0 {
            assert!(p.output >= p.input / 10.0, "{key}: {p:?}");
        }
        for cached in [p.cache_read, p.cache_write].into_iter().flatten() {
            assert!(cached <= p.input * 1.5, "{key}: {p:?}");
        }
    }
}

#[test]
fn dated_and_aliased_names_find_their_family() {
    let t = PriceTable::builtin();
    let sonnet = t
        .lookup("a", "anthropic", "claude-sonnet-4-5-20250929")
        .unwrap();
    assert_eq!((sonnet.input, sonnet.output), (3.0, 15.0));
    assert_eq!(sonnet.cache_write, Some(3.75));
    let alias = t.lookup("a", "anthropic", "claude-sonnet-4-5").unwrap();
    assert_eq!(alias, sonnet);
    // Opus 4.5 is not priced like Opus 4.1: the longer pattern wins, not the first.
    let opus45 = t
        .lookup("a", "anthropic", "claude-opus-4-5-20251101")
        .unwrap();
    assert_eq!(opus45.input, 5.0);
    let opus41 = t
        .lookup("a", "anthropic", "claude-opus-4-1-20250805")
        .unwrap();
    assert_eq!(opus41.input, 15.0);
    // Bedrock ids and cross-region inference profiles.
    let bedrock = t
        .lookup(
            "b",
            "bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        )
        .unwrap();
    assert_eq!(bedrock, sonnet);
    // gpt-4o-mini is not gpt-4o.
    assert_eq!(t.lookup("o", "openai", "gpt-4o-mini").unwrap().input, 0.15);
    // Local servers are free; an unknown model has no price at all.
    assert_eq!(t.lookup("ollama", "ollama", "llama3.2").unwrap().input, 0.0);
    assert_eq!(t.lookup("o", "openai", "gpt-99"), None);
    assert_eq!(t.lookup("x", "azure", "my-deployment"), None);
}

#[test]
fn cost_prices_cached_and_reasoning_tokens_at_their_own_rates() {
    let p = Price {
        input: 3.0,
        output: 15.0,
        cache_read: Some(0.3),
        cache_write: Some(3.75),
        reasoning: None,
    };
    // 1000 prompt tokens of which 600 read from cache and 100 written to it; 500 output.
    let u = Usage {
        input: 1000,
        output: 500,
        cache_read: 600,
        cache_write: 100,
        ..Usage::default()
    };
    let expected = (300.0 * 3.0 + 600.0 * 0.3 + 100.0 * 3.75 + 500.0 * 15.0) / 1e6;
    assert!((p.cost(&u) - expected).abs() < 1e-12, "{}", p.cost(&u));
    // Reasoning priced apart only when the vendor does.
    let r = Price {
        reasoning: Some(30.0),
        ..p
    };
    let u = Usage {
        output: 100,
        reasoning: 40,
        ..usage(0, 0)
    };
    assert!((r.cost(&u) - (60.0 * 15.0 + 40.0 * 30.0) / 1e6).abs() < 1e-12);
    assert!((p.cost(&u) - 100.0 * 15.0 / 1e6).abs() < 1e-12);
    // Inconsistent counts never go negative.
    let odd = Usage {
        input: 10,
        cache_read: 50,
        ..usage(0, 0)
    };
    assert!(p.cost(&odd) >= 0.0);
}

#[test]
fn overrides_replace_builtin_prices_and_a_provider_entry_beats_the_vendor() {
    let cheap = Price {
        input: 1.0,
        output: 2.0,
        cache_read: None,
        cache_write: None,
        reasoning: None,
    };
    let t = PriceTable::with_overrides([
        ("openai/gpt-4o", cheap),
        (
            "mock/*",
            Price {
                input: 1000.0,
                output: 2000.0,
                ..cheap
            },
        ),
        (
            "eu-openai/gpt-4o*",
            Price {
                input: 7.0,
                ..cheap
            },
        ),
    ])
    .unwrap();
    assert_eq!(t.lookup("us", "openai", "gpt-4o"), Some(cheap));
    assert_eq!(
        t.lookup("eu-openai", "openai", "gpt-4o").unwrap().input,
        7.0
    );
    assert_eq!(t.lookup("m", "mock", "anything").unwrap().output, 2000.0);
    // Any config entry beats every built-in one, even a shorter pattern.
    let t = PriceTable::with_overrides([
        ("anthropic/claude-*", cheap),
        (
            "openai/gpt-4o*",
            Price {
                input: 9.0,
                ..cheap
            },
        ),
    ])
    .unwrap();
    assert_eq!(
        t.lookup("a", "anthropic", "claude-sonnet-4-5-20250929"),
        Some(cheap)
    );
    assert_eq!(t.lookup("o", "openai", "gpt-4o").unwrap().input, 9.0);
    assert_eq!(t.lookup("o", "openai", "gpt-4o-mini").unwrap().input, 9.0);
    // Models the overrides do not match keep their built-in price.
    assert_eq!(t.lookup("o", "openai", "gpt-4.1").unwrap().input, 2.0);
    // The built-in table itself is untouched.
    assert_eq!(
        PriceTable::builtin()
            .lookup("us", "openai", "gpt-4o")
            .unwrap()
            .input,
        2.5
    );
}

#[test]
fn bad_keys_and_prices_are_refused() {
    let p = Price {
        input: 1.0,
        output: 1.0,
        cache_read: None,
        cache_write: None,
        reasoning: None,
    };
    for key in ["gpt-4o", "/gpt-4o", "openai/", "*/gpt-4o"] {
        assert!(
            matches!(
                PriceTable::default().insert(key, p),
                Err(KeyError::Shape(_))
            ),
            "{key}"
        );
    }
    let negative = Price { input: -1.0, ..p };
    assert_eq!(
        PriceTable::default().insert("a/b", negative),
        Err(KeyError::Negative)
    );
    let nan = Price {
        output: f64::NAN,
        ..p
    };
    assert_eq!(
        PriceTable::default().insert("a/b", nan),
        Err(KeyError::Negative)
    );
}
