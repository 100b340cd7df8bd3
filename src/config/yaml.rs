//! YAML text to serde-derived types, with every problem reported, each with its line and column.
//!
//! serde's derive stops at the first error, so decoding here restarts after each one with the
//! failing value left out: a struct field then falls back to its serde default, and a list item
//! or map value becomes an empty placeholder (so indices and names stay as written, and the
//! placeholder is left out too if even that fails). The tree is small and errors are few, so a
//! pass per error costs nothing worth measuring. Unknown keys are checked against the field list
//! the derive hands to `deserialize_struct`, reported with "did you mean", and skipped without
//! stopping. Also here: `${VAR}` expansion of every string, `<<` merge keys, numbers and
//! booleans written as strings, and how a value is shown in a message (never the text of a
//! [`Secret`] or of an expanded `${VAR}`).
//!
//! The YAML itself is parsed by saphyr, which keeps a position for every node and resolves
//! aliases (with a budget against alias bombs). Only this glue is written by hand.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYamlOwned as Node, ScalarOwned, YamlDataOwned};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::{env, ConfigProblem, Location};

/// Path reported for problems with the file as a whole (syntax, wrong root type).
const FILE_PATH: &str = "<file>";
/// The serde name of [`Secret`]; the deserializer redacts what is inside.
const SECRET: &str = "$ferrogate::config::Secret";
/// Longest value echoed in a message; longer ones are cut so one bad value cannot flood output.
const MAX_ECHO_CHARS: usize = 60;

/// A value never shown in messages (keys, header values, AWS credentials): problems describe
/// it by type only. The deserializer recognises it by its serde name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "$ferrogate::config::Secret")]
pub(crate) struct Secret<T>(pub T);

/// The names serde derives for `T`: the variants of a unit-only enum or the fields of a struct,
/// in declaration order. Lets a name be spelt once, in the serde attribute.
pub(crate) fn serde_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'c>(&'c std::cell::Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            names: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(names);
            self.deserialize_any(v)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            names: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Self::Error> {
            self.deserialize_enum(name, names, v)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map identifier
            ignored_any
        }
    }
    let names = std::cell::Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&names));
    names.get()
}

/// A decoded value plus what the validation pass needs to know about the file.
#[derive(Default)]
pub(crate) struct Decoded<T> {
    pub value: T,
    /// Problems found while decoding, in the order found.
    pub problems: Vec<ConfigProblem>,
    /// Every path given in the file (explicit nulls count as not given), with its position.
    pub seen: HashMap<String, Location>,
    /// Paths whose value failed to decode (the value was left out or replaced).
    pub failed: HashSet<String>,
}

/// Parses `text` and decodes it as `T`, collecting every problem. `T::default()` stands in for a
/// file that is empty or not YAML at all.
pub(crate) fn decode<T: DeserializeOwned + Default>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Decoded<T> {
    let ctx = Ctx {
        env,
        skips: RefCell::new(HashMap::new()),
        state: RefCell::default(),
    };
    let docs = Node::load_from_str(text).unwrap_or_else(|e| {
        let at = Location {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        };
        ctx.note(FILE_PATH, e.info().to_string(), at);
        Vec::new()
    });
    if let Some(extra) = docs.get(1) {
        let msg = "expected one YAML document, found several (remove the `---` separators)";
        ctx.note(FILE_PATH, msg.into(), location(extra));
    }
    let root = docs.first().filter(|d| !d.data.is_badvalue());
    let value = loop {
        let Some(root) = root else {
            break T::default();
        };
        let de = NodeDe::new(root, String::new(), &ctx, false, false);
        let found = match de.visit(std::marker::PhantomData::<T>) {
            Ok(value) => break value,
            Err(Error { found: Some(f), .. }) => f,
            Err(_) => break T::default(),
        };
        ctx.record(&found);
        if found.id == node_id(root) {
            break T::default();
        }
        let next = if found.placeholder {
            Skip::Omit
        } else {
            Skip::Placeholder
        };
        ctx.skips.borrow_mut().insert(found.id, next);
    };
    let state = ctx.state.into_inner();
    Decoded {
        value,
        problems: state.problems,
        seen: state.seen,
        failed: state.failed,
    }
}

/// A problem at `path`; the empty path (the root) is the file as a whole.
pub(crate) fn problem(path: &str, message: String, location: Option<Location>) -> ConfigProblem {
    let path = if path.is_empty() { FILE_PATH } else { path };
    ConfigProblem {
        path: path.to_string(),
        message,
        location,
        file: None,
    }
}

fn location(node: &Node) -> Location {
    Location {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

/// Nodes are identified by address: the tree does not move while it is decoded, and an alias
/// is a copy of its anchor, so each use of it is its own node.
fn node_id(node: &Node) -> usize {
    std::ptr::from_ref(node) as usize
}

pub(crate) fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// What happens to a value that failed in an earlier pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Left out of a struct; an empty stand-in in a list or map.
    Placeholder,
    /// Left out everywhere (the stand-in failed too).
    Omit,
}

struct Ctx<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    skips: RefCell<HashMap<usize, Skip>>,
    state: RefCell<Decoded<()>>,
}

impl Ctx<'_> {
    fn skip(&self, node: &Node) -> Option<Skip> {
        self.skips.borrow().get(&node_id(node)).copied()
    }

    /// A problem that does not stop decoding (unknown keys); each pass finds it again.
    fn note(&self, path: &str, message: String, loc: Location) {
        let mut s = self.state.borrow_mut();
        let dup = s
            .problems
            .iter()
            .any(|p| p.path == path && p.message == message);
        if !dup {
            s.problems.push(problem(path, message, Some(loc)));
        }
    }

    fn seen(&self, path: &str, node: &Node) {
        let mut s = self.state.borrow_mut();
        if !s.seen.contains_key(path) {
            s.seen.insert(path.to_string(), location(node));
        }
    }

    /// Records the problems of a failed value, leaving out second-hand ones: a struct that
    /// misses a field whose value already failed, or a check of a whole value one of whose
    /// parts already failed.
    fn record(&self, found: &Found) {
        let mut s = self.state.borrow_mut();
        if !found.placeholder {
            for (path, message, missing) in &found.problems {
                let below = |f: &String| {
                    f.len() > path.len()
                        && f.starts_with(path.as_str())
                        && matches!(f.as_bytes()[path.len()], b'.' | b'[')
                };
                let second_hand = if *missing {
                    s.failed.contains(path)
                } else {
                    s.failed.iter().any(below)
                };
                if !second_hand {
                    let loc = s.seen.get(path).copied().or(found.loc);
                    s.problems.push(problem(path, message.clone(), loc));
                }
            }
        }
        for (path, _, _) in &found.problems {
            s.failed.insert(path.clone());
        }
        s.failed.insert(found.path.clone());
    }
}

/// A decode error. Once it leaves the value it is about, it carries that value's problems.
#[derive(Debug)]
pub(crate) struct Error {
    what: What,
    found: Option<Found>,
}

#[derive(Debug)]
enum What {
    /// A message; `{got}` in it is replaced by the value. `\0field\0message` is about a field
    /// of the value (a check of the whole that blames one part).
    Message(String),
    Missing(&'static str),
    Env(Vec<env::ExpandError>),
}

#[derive(Debug)]
struct Found {
    id: usize,
    placeholder: bool,
    path: String,
    loc: Option<Location>,
    /// (path, message, is a missing field)
    problems: Vec<(String, String, bool)>,
}

// Never shown: problems are built from `What` when the error is tied to its value.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.what)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(What::Message(msg.to_string()))
    }
    fn invalid_type(_: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Error::expected(&exp.to_string())
    }
    fn invalid_value(_: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Error::expected(&exp.to_string())
    }
    fn missing_field(field: &'static str) -> Self {
        Error::new(What::Missing(field))
    }
}

impl Error {
    fn new(what: What) -> Self {
        Error { what, found: None }
    }

    /// "expected {exp}, got {the value}", in the words of the config file.
    fn expected(exp: &str) -> Self {
        Error::new(What::Message(format!(
            "expected {}, got {{got}}",
            plain(exp)
        )))
    }

    /// Ties the error to the value it is about, unless a value further down already has it.
    fn attribute(mut self, de: &NodeDe) -> Self {
        if self.found.is_some() {
            return self;
        }
        let path = de.path.clone();
        let problems = match &self.what {
            What::Message(m) => {
                let m = m.replace("{got}", &de.render());
                let field = m.strip_prefix('\0').and_then(|rest| rest.split_once('\0'));
                match field {
                    Some((field, msg)) => vec![(child_path(&path, field), msg.to_string(), false)],
                    None => vec![(path.clone(), m, false)],
                }
            }
            What::Missing(field) => {
                vec![(
                    child_path(&path, field),
                    "missing required field".into(),
                    true,
                )]
            }
            What::Env(errors) => errors
                .iter()
                .map(|e| (path.clone(), e.to_string(), false))
                .collect(),
        };
        self.found = Some(Found {
            id: node_id(de.node),
            placeholder: de.placeholder,
            path,
            loc: Some(location(de.node)),
            problems,
        });
        self
    }
}

/// serde's names for what a visitor expects, in the words of the config file.
fn plain(expected: &str) -> &str {
    match expected {
        e if e.starts_with("struct ") || e == "a map" => "a mapping",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        e => e,
    }
}

fn quote(s: &str) -> String {
    if s.chars().count() > MAX_ECHO_CHARS {
        let cut: String = s.chars().take(MAX_ECHO_CHARS).collect();
        format!("\"{}…\"", cut.escape_debug())
    } else {
        format!("{s:?}")
    }
}

/// A scalar as the deserializer sees it.
enum View<'a> {
    /// A placeholder for a value that failed: behaves as empty or zero.
    Empty,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Seq(&'a [Node]),
    Map(&'a saphyr::AnnotatedMappingOwned<Node>),
    Other,
}

#[derive(Clone)]
struct NodeDe<'a, 'e> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx<'e>,
    redact: bool,
    placeholder: bool,
}

impl<'a, 'e> NodeDe<'a, 'e> {
    fn new(
        node: &'a Node,
        path: String,
        ctx: &'a Ctx<'e>,
        redact: bool,
        placeholder: bool,
    ) -> Self {
        if !placeholder {
            ctx.seen(&path, node);
        }
        NodeDe {
            node,
            path,
            ctx,
            redact,
            placeholder,
        }
    }

    /// Deserializes this value, tying any error to it.
    fn visit<S: DeserializeSeed<'a>>(self, seed: S) -> Result<S::Value, Error> {
        let origin = self.clone();
        seed.deserialize(self).map_err(|e| e.attribute(&origin))
    }

    fn view(&self) -> View<'a> {
        if self.placeholder {
            return View::Empty;
        }
        match &self.node.data {
            YamlDataOwned::Value(s) => match s {
                ScalarOwned::Null => View::Null,
                ScalarOwned::Boolean(b) => View::Bool(*b),
                ScalarOwned::Integer(i) => View::Int(*i),
                ScalarOwned::FloatingPoint(f) => View::Float(f.0),
                ScalarOwned::String(s) => View::Str(s),
            },
            YamlDataOwned::Sequence(items) => View::Seq(items),
            YamlDataOwned::Mapping(map) => View::Map(map),
            _ => View::Other,
        }
    }

    fn render(&self) -> String {
        if self.placeholder {
            return "nothing".into();
        }
        render(self.node, self.redact)
    }

    /// The text of a scalar, `${VAR}` expanded; numbers as written.
    fn text(&self) -> Result<Option<String>, Error> {
        Ok(Some(match self.view() {
            View::Empty => String::new(),
            View::Str(s) => env::expand(s, self.ctx.env)
                .map_err(|e| Error::new(What::Env(e)))?
                .into_owned(),
            View::Int(i) => i.to_string(),
            View::Float(f) => float_text(f),
            _ => return Ok(None),
        }))
    }

    fn ignore<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    /// The entries of a mapping in file order, `<<` merges applied, keys checked against
    /// `fields` when decoding a struct. Explicit nulls count as absent in a struct.
    fn entries(&self, fields: Option<(&str, &[&str])>) -> Vec<Entry<'a>> {
        let View::Map(map) = self.view() else {
            return Vec::new();
        };
        let is_merge =
            |k: &Node| matches!(&k.data, YamlDataOwned::Value(ScalarOwned::String(s)) if s == "<<");
        let mut pairs: Vec<(&'a Node, &'a Node)> =
            map.iter().filter(|(k, _)| !is_merge(k)).collect();
        // Merged keys come after the mapping's own, which win; earlier sources win too.
        for (_, merged) in map.iter().filter(|(k, _)| is_merge(k)) {
            let sources = match &merged.data {
                YamlDataOwned::Sequence(items) => items.iter().collect(),
                _ => vec![merged],
            };
            for source in sources {
                match &source.data {
                    YamlDataOwned::Mapping(m) => pairs.extend(m.iter()),
                    _ => {
                        let msg = "<< merges a mapping (like <<: *common) or a list of them";
                        self.ctx
                            .note(&child_path(&self.path, "<<"), msg.into(), location(source));
                    }
                }
            }
        }
        let mut out: Vec<Entry<'a>> = Vec::with_capacity(pairs.len());
        for (k, node) in pairs {
            let YamlDataOwned::Value(ScalarOwned::String(key)) = &k.data else {
                let msg = format!(
                    "expected names to be strings, got {}",
                    render(k, self.redact)
                );
                self.ctx.note(&self.path, msg, location(k));
                continue;
            };
            let path = child_path(&self.path, key);
            if out.iter().any(|e| e.key == *key) {
                continue;
            }
            if let Some((owner, fields)) = fields {
                if !fields.contains(&key.as_str()) {
                    let msg = super::validate::unknown_field(owner, key, fields);
                    self.ctx.note(&path, msg, location(k));
                    continue;
                }
                if matches!(node.data, YamlDataOwned::Value(ScalarOwned::Null)) {
                    continue;
                }
            }
            let placeholder = match self.ctx.skip(node) {
                None => false,
                Some(Skip::Placeholder) if fields.is_none() => true,
                Some(_) => continue,
            };
            out.push(Entry {
                key: key.clone(),
                path,
                node,
                placeholder,
            });
        }
        out
    }

    fn int<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.view() {
            View::Empty => v.visit_u64(0),
            View::Int(i) => match u64::try_from(i) {
                Ok(n) => v.visit_u64(n),
                Err(_) => v.visit_i64(i),
            },
            View::Float(f) => v.visit_f64(f),
            View::Str(_) => {
                let text = self.text()?.unwrap_or_default();
                let t = text.trim();
                if let Ok(n) = t.parse::<u64>() {
                    v.visit_u64(n)
                } else if let Ok(n) = t.parse::<i64>() {
                    v.visit_i64(n)
                } else {
                    Err(de::Error::invalid_type(de::Unexpected::Str(t), &v))
                }
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("value"), &v)),
        }
    }
}

/// How a value is shown after "got": scalars as written, containers by type; a secret by type
/// only, and an expanded string by its `${...}` text, never the expansion.
fn render(node: &Node, redact: bool) -> String {
    let YamlDataOwned::Value(scalar) = &node.data else {
        return match &node.data {
            YamlDataOwned::Sequence(_) => "a list".into(),
            YamlDataOwned::Mapping(_) => "a mapping".into(),
            YamlDataOwned::Tagged(tag, _) => format!("a value tagged {tag}"),
            _ => "an unsupported value".into(),
        };
    };
    match scalar {
        ScalarOwned::Null => "nothing".into(),
        ScalarOwned::Boolean(_) if redact => "a boolean".into(),
        ScalarOwned::Integer(_) | ScalarOwned::FloatingPoint(_) if redact => "a number".into(),
        ScalarOwned::String(_) if redact => "a string".into(),
        ScalarOwned::Boolean(b) => b.to_string(),
        ScalarOwned::Integer(i) => i.to_string(),
        ScalarOwned::FloatingPoint(f) => float_text(f.0),
        ScalarOwned::String(s) if s.contains("${") => format!("the expansion of {}", quote(s)),
        ScalarOwned::String(s) => quote(s),
    }
}

fn float_text(f: f64) -> String {
    match f {
        f if f.is_nan() => ".nan".into(),
        f if f.is_infinite() => (if f > 0.0 { ".inf" } else { "-.inf" }).into(),
        f => f.to_string(),
    }
}

macro_rules! forward {
    ($($name:ident$(($($arg:ty),*))?)* => $to:ident) => {$(
        fn $name<V: Visitor<'a>>(self, $($(_: $arg,)*)? v: V) -> Result<V::Value, Error> {
            self.$to(v)
        }
    )*};
}

impl<'a> de::Deserializer<'a> for NodeDe<'a, '_> {
    type Error = Error;

    forward! { deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
    deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128 => int }
    forward! { deserialize_string deserialize_char deserialize_identifier => deserialize_str }
    // No config type is a tuple, unit or bytes: those take whatever the value is.
    forward! { deserialize_bytes deserialize_byte_buf deserialize_unit
    deserialize_unit_struct(&'static str) deserialize_tuple(usize)
    deserialize_tuple_struct(&'static str, usize) => deserialize_any }
    forward! { deserialize_f32 => deserialize_f64 }
    forward! { deserialize_ignored_any => ignore }

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.view() {
            View::Empty | View::Null => v.visit_unit(),
            View::Bool(b) => v.visit_bool(b),
            View::Int(_) => self.int(v),
            View::Float(f) => v.visit_f64(f),
            View::Str(_) => v.visit_string(self.text()?.unwrap_or_default()),
            View::Seq(_) => self.deserialize_seq(v),
            View::Map(_) => self.deserialize_map(v),
            View::Other => Err(de::Error::invalid_type(de::Unexpected::Other("value"), &v)),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        let parsed = match self.view() {
            View::Empty => Some(false),
            View::Bool(b) => Some(b),
            // YAML 1.1 spellings, still common in hand-written configs.
            View::Str(_) => match self.text()?.unwrap_or_default().trim() {
                "true" | "on" | "yes" => Some(true),
                "false" | "off" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(b) => v.visit_bool(b),
            None => Err(de::Error::invalid_type(de::Unexpected::Other("value"), &v)),
        }
    }

    fn deserialize_f64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        let text = self.text()?;
        match (
            self.view(),
            text.as_deref().map(|t| t.trim().parse::<f64>()),
        ) {
            (View::Int(i), _) => v.visit_f64(i as f64),
            (View::Float(f), _) => v.visit_f64(f),
            (View::Str(_) | View::Empty, Some(Ok(f))) => v.visit_f64(f),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("value"), &v)),
        }
    }

    /// Strings; a number is taken as written, since YAML turns names like `3` into numbers.
    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.text()? {
            Some(text) => v.visit_string(text),
            None => Err(Error::expected("a string")),
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.view() {
            View::Empty | View::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &str,
        v: V,
    ) -> Result<V::Value, Error> {
        if name != SECRET || self.redact {
            return v.visit_newtype_struct(self);
        }
        // Errors inside are tied to their values here, while the value is known to be secret.
        let secret = NodeDe {
            redact: true,
            ..self
        };
        let origin = secret.clone();
        v.visit_newtype_struct(secret)
            .map_err(|e| e.attribute(&origin))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        let nodes = match self.view() {
            View::Empty => &[][..],
            View::Seq(nodes) => nodes,
            _ => return Err(Error::expected("a list")),
        };
        let items = nodes.iter().enumerate().filter_map(|(i, node)| {
            let placeholder = match self.ctx.skip(node) {
                None => false,
                Some(Skip::Placeholder) => true,
                Some(Skip::Omit) => return None,
            };
            let path = format!("{}[{i}]", self.path);
            Some(Entry {
                key: String::new(),
                path,
                node,
                placeholder,
            })
        });
        v.visit_seq(Entries {
            entries: items.collect::<Vec<_>>().into_iter(),
            parent: &self,
        })
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.view() {
            View::Empty | View::Null | View::Map(_) => {
                let entries = self.entries(None).into_iter();
                v.visit_map(Entries {
                    entries,
                    parent: &self,
                })
            }
            _ => Err(Error::expected("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let entries = match self.view() {
            View::Empty | View::Null | View::Map(_) => self.entries(Some((name, fields))),
            // A scalar is shorthand for a struct's `value` (a key given as just the key).
            View::Str(_) | View::Int(_) | View::Float(_) if fields.contains(&"value") => {
                let (key, path) = ("value".to_string(), self.path.clone());
                vec![Entry {
                    key,
                    path,
                    node: self.node,
                    placeholder: false,
                }]
            }
            _ => return Err(Error::expected("a mapping")),
        };
        v.visit_map(Entries {
            entries: entries.into_iter(),
            parent: &self,
        })
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let Some(text) = self.text()? else {
            return Err(Error::expected("a string"));
        };
        if variants.contains(&text.as_str()) {
            return v.visit_enum(text.as_str().into_deserializer());
        }
        let shown = match self.view() {
            View::Str(_) => self.render(),
            _ => quote(&text),
        };
        let msg = super::validate::unknown_variant(name, &text, &shown, variants);
        Err(Error::new(What::Message(msg)))
    }
}

/// A value inside a mapping or list, with its path; `placeholder` stands in for one that failed.
struct Entry<'a> {
    key: String,
    path: String,
    node: &'a Node,
    placeholder: bool,
}

/// The entries of a mapping or the items of a list, handed to a visitor one by one.
struct Entries<'p, 'a, 'e> {
    entries: std::vec::IntoIter<Entry<'a>>,
    parent: &'p NodeDe<'a, 'e>,
}

impl Entries<'_, '_, '_> {
    fn next_value<'a, S: DeserializeSeed<'a>>(
        e: Entry<'a>,
        parent: &NodeDe<'a, '_>,
        seed: S,
    ) -> Result<S::Value, Error> {
        NodeDe::new(e.node, e.path, parent.ctx, parent.redact, e.placeholder).visit(seed)
    }
}

impl<'a> de::MapAccess<'a> for Entries<'_, 'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        // The value follows at once; peek at it without consuming.
        match self.entries.as_slice().first() {
            Some(e) => seed
                .deserialize(e.key.as_str().into_deserializer())
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'a>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.entries.next() {
            Some(e) => Self::next_value(e, self.parent, seed),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}

impl<'a> de::SeqAccess<'a> for Entries<'_, 'a, '_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.entries.next() {
            Some(e) => Self::next_value(e, self.parent, seed).map(Some),
            None => Ok(None),
        }
    }
}
