//! What a request cost: USD per million tokens for each vendor's models, and the cost of one
//! attempt's usage.
//!
//! The built-in table is `data/pricing.json` (dated, with its sources), compiled in; the config's
//! `pricing:` entries override or extend it. Keys are `vendor/model` (or `provider-id/model` for
//! an override that applies to one configured provider only), `*` and `?` glob the model part,
//! and the longest matching key wins. A model found nowhere has no price: its cost is `None`,
//! never 0.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use crate::usage::Usage;

/// Prices of one model, USD per million tokens. Cache and reasoning prices default to the
/// input and output price when the vendor does not price them separately.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Reasoning tokens, when priced apart from the rest of the output.
    #[serde(default)]
    pub reasoning: Option<f64>,
}

impl Price {
    /// The cost of `usage` in USD. `usage.input` counts every prompt token, cache reads and
    /// writes included, and `usage.output` every generated token, reasoning included (the
    /// gateway's usage model for every dialect), so the cached and reasoning parts are priced
    /// at their own rates and the rest at the base ones.
    pub fn cost(&self, u: &Usage) -> f64 {
        let cached = u.cache_read.saturating_add(u.cache_write);
        let plain_input = u.input.saturating_sub(cached);
        let reasoning = u.reasoning.min(u.output);
        let plain_output = u.output - reasoning;
        let micro = plain_input as f64 * self.input
            + u.cache_read as f64 * self.cache_read.unwrap_or(self.input)
            + u.cache_write as f64 * self.cache_write.unwrap_or(self.input)
            + plain_output as f64 * self.output
            + reasoning as f64 * self.reasoning.unwrap_or(self.output);
        micro / 1_000_000.0
    }

    /// Whether every price is a finite number ≥ 0.
    pub fn is_valid(&self) -> bool {
        [
            Some(self.input),
            Some(self.output),
            self.cache_read,
            self.cache_write,
            self.reasoning,
        ]
        .into_iter()
        .flatten()
        .all(|p| p.is_finite() && p >= 0.0)
    }
}

/// One vendor's (or one provider's) prices: exact model names, then globs longest first.
#[derive(Debug, Default, Clone)]
struct Models {
    exact: HashMap<String, Price>,
    /// `(pattern, price)`, longest pattern first.
    globs: Vec<(String, Price)>,
}

impl Models {
    fn insert(&mut self, model: &str, price: Price) {
        if crate::glob::is_glob(model) {
            self.globs.retain(|(p, _)| p != model);
            self.globs.push((model.to_owned(), price));
            self.globs.sort_by_key(|g| std::cmp::Reverse(g.0.len()));
        } else {
            self.exact.insert(model.to_owned(), price);
        }
    }

    fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.exact.get(model) {
            return Some(*p);
        }
        self.globs
            .iter()
            .find(|(pattern, _)| crate::glob::matches(pattern, model))
            .map(|(_, p)| *p)
    }
}

/// Prices by `vendor/model` (or `provider-id/model`), in two layers: the config's `pricing:`
/// entries, then the built-in table. Any config entry that matches wins over every built-in
/// one (an override `anthropic/claude-*` is not shadowed by the built-in, longer
/// `claude-sonnet-4-5*`).
#[derive(Debug, Default, Clone)]
pub struct PriceTable {
    config: HashMap<String, Arc<Models>>,
    builtin: HashMap<String, Arc<Models>>,
}

/// The prices one configured provider can charge, in order: the config's entries for its id,
/// the config's for its vendor, the built-in ones for its vendor. Resolved once per provider
/// when the routing snapshot is compiled, so a request's lookup is a few hash lookups (and a
/// glob scan only on a miss); a provider with nothing priced checks three empty slots.
#[derive(Debug, Default, Clone)]
pub struct ProviderPrices {
    layers: [Option<Arc<Models>>; 3],
}

impl ProviderPrices {
    /// The price of `model` (the name sent upstream), if any entry gives one.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.layers.iter().flatten().find_map(|m| m.lookup(model))
    }
}

/// Why a `vendor/model` key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected `vendor/model` or `provider/model` (a model glob like `openai/gpt-4o*` is fine), got {0:?}")]
    Shape(String),
    #[error("prices must be numbers ≥ 0")]
    Negative,
}

impl PriceTable {
    /// The built-in table, parsed once.
    pub fn builtin() -> &'static PriceTable {
        &BUILTIN
    }

    /// Adds or replaces a config price for `key` (`vendor/model` or `provider-id/model`, the
    /// model part may be a glob).
    pub fn insert(&mut self, key: &str, price: Price) -> Result<(), KeyError> {
        insert_into(&mut self.config, key, price)
    }

    /// The entries that apply to provider `provider_id` of vendor `vendor` (`None` when the
    /// provider is no known vendor's, e.g. a self-hosted OpenAI-compatible server).
    pub fn for_provider(&self, provider_id: &str, vendor: Option<&str>) -> ProviderPrices {
        ProviderPrices {
            layers: [
                self.config.get(provider_id).cloned(),
                vendor.and_then(|v| self.config.get(v)).cloned(),
                vendor.and_then(|v| self.builtin.get(v)).cloned(),
            ],
        }
    }

    /// The price of `model` served by the provider `provider_id` of vendor `vendor`: an entry
    /// for the provider itself first, then the vendor's.
    pub fn lookup(&self, provider_id: &str, vendor: &str, model: &str) -> Option<Price> {
        self.for_provider(provider_id, Some(vendor)).lookup(model)
    }

    /// The built-in table with `overrides` applied on top.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, Price)>,
    ) -> Result<PriceTable, (String, KeyError)> {
        let mut table = Self::builtin().clone();
        for (key, price) in overrides {
            table.insert(key, price).map_err(|e| (key.to_owned(), e))?;
        }
        Ok(table)
    }
}

fn insert_into(
    layer: &mut HashMap<String, Arc<Models>>,
    key: &str,
    price: Price,
) -> Result<(), KeyError> {
    let (prefix, model) = split_key(key)?;
    if !price.is_valid() {
        return Err(KeyError::Negative);
    }
    Arc::make_mut(layer.entry(prefix.to_owned()).or_default()).insert(model, price);
    Ok(())
}

fn split_key(key: &str) -> Result<(&str, &str), KeyError> {
    match key.split_once('/') {
        Some((prefix, model))
            if !prefix.is_empty() && !model.is_empty() && !crate::glob::is_glob(prefix) =>
        {
            Ok((prefix, model))
        }
        _ => Err(KeyError::Shape(key.to_owned())),
    }
}

/// `data/pricing.json`: the dated table with its sources.
#[derive(Deserialize)]
struct DataFile {
    #[allow(dead_code)] // read by people, checked by a test
    date: String,
    prices: indexmap::IndexMap<String, Price>,
}

/// The date the built-in prices were compiled (`data/pricing.json`).
pub fn builtin_date() -> &'static str {
    &BUILTIN_FILE.date
}

static BUILTIN_FILE: LazyLock<DataFile> = LazyLock::new(|| {
    // The file is part of the binary and checked by the tests: a parse failure here is a build
    // defect, not input.
    serde_json::from_str(include_str!("../../data/pricing.json"))
        .unwrap_or_else(|e| panic!("data/pricing.json is invalid: {e}"))
});

static BUILTIN: LazyLock<PriceTable> = LazyLock::new(|| {
    let mut table = PriceTable::default();
    for (key, price) in &BUILTIN_FILE.prices {
        if let Err(e) = insert_into(&mut table.builtin, key, *price) {
            panic!("data/pricing.json: {key}: {e}");
        }
    }
    table
});

#[cfg(test)]
mod tests;
