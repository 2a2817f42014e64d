//! The configuration reference, derived from the config structs themselves:
//! each key's meaning is its field's doc comment (through `schemars`), its
//! default is what `Config::default()` serialises to. `berth config --default`
//! prints it as a commented file, and a test holds the README's table to it,
//! so the three cannot drift apart.

use schemars::Schema;
use serde_json::{Map, Value as Json};
use toml::Value;

use super::{Config, RegistryConfig, RuntimeHandlerConfig};

/// One documented key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// Dotted path; map keys are `<name>` (handlers) and `<host>` (registries).
    pub key: String,
    /// `None` when the key is unset by default (its meaning says what applies).
    pub default: Option<Value>,
    pub meaning: String,
}

/// Every key, in the order the structs declare them.
pub fn keys() -> Vec<KeyDoc> {
    let reference = Reference::new();
    let mut keys = Vec::new();
    reference.walk(reference.root(), Some(&reference.defaults), "", &mut |key, default, meaning| {
        keys.push(KeyDoc { key: key.to_string(), default: default.cloned(), meaning: meaning.to_string() })
    });
    keys
}

/// The complete default file: every key with its meaning as a comment.
pub fn default_file() -> String {
    let reference = Reference::new();
    let mut out = String::from(
        "# berth's configuration, as `berth config --default` prints it: every key\n\
         # with its default. Drop-ins in config.d/ beside this file are merged after\n\
         # it in lexical order; command-line flags win over both.\n",
    );
    reference.render(reference.root(), Some(&reference.defaults), &[], &mut out);
    out
}

/// The README's configuration table, one row per key.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | default | meaning |\n| --- | --- | --- |\n");
    for key in keys() {
        let default = key.default.as_ref().map_or_else(|| "unset".to_string(), |v| format!("`{}`", inline(v)));
        out.push_str(&format!("| `{}` | {} | {} |\n", key.key, default, key.meaning));
    }
    out
}

struct Reference {
    schema: Schema,
    /// The defaults, with one example registry so its keys are walked too.
    defaults: Value,
}

/// A table whose keys the operator chooses: how the reference names its
/// entries, and what an entry holds when it sets nothing.
struct MapKind {
    key: &'static str,
    placeholder: &'static str,
    template: fn() -> Option<Value>,
}

const MAPS: &[MapKind] = &[
    MapKind {
        key: "runtime.handlers",
        placeholder: "<name>",
        template: || Value::try_from(toml::from_str::<RuntimeHandlerConfig>("").ok()?).ok(),
    },
    MapKind { key: "registries", placeholder: "<host>", template: || Value::try_from(RegistryConfig::default()).ok() },
];

fn map_kind(key: &str) -> Option<&'static MapKind> {
    MAPS.iter().find(|map| map.key == key)
}

impl Reference {
    fn new() -> Self {
        let schema = schemars::schema_for!(Config);
        let defaults = Value::try_from(Config::default()).unwrap_or(Value::Table(Default::default()));
        Reference { schema, defaults }
    }

    fn root(&self) -> &Json {
        self.schema.as_value()
    }

    /// A schema with `$ref`s followed (schemars puts structs in `$defs`).
    fn resolve<'a>(&'a self, schema: &'a Json) -> &'a Json {
        let target = schema
            .get("$ref")
            .or_else(|| schema.get("anyOf").and_then(|any| any.as_array()?.iter().find_map(|s| s.get("$ref"))))
            .and_then(Json::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| self.root().get("$defs")?.get(name));
        target.unwrap_or(schema)
    }

    fn properties<'a>(&'a self, schema: &'a Json) -> Option<&'a Map<String, Json>> {
        self.resolve(schema).get("properties")?.as_object()
    }

    /// The schema of a map's values, when `schema` is a map of structs.
    fn map_values<'a>(&'a self, schema: &'a Json) -> Option<&'a Json> {
        let values = self.resolve(schema).get("additionalProperties")?;
        self.properties(values).map(|_| values)
    }

    /// The struct an array holds, when it holds structs (possibly beside plain
    /// values, as a mirror is a URL or a table).
    fn array_items<'a>(&'a self, schema: &'a Json) -> Option<&'a Json> {
        let items = self.resolve(schema).get("items")?;
        let items = self.resolve(items);
        match items.get("anyOf").and_then(Json::as_array) {
            Some(variants) => variants.iter().find(|v| self.properties(v).is_some()),
            None => self.properties(items).map(|_| items),
        }
    }

    /// Calls `visit(key, default, meaning)` for every leaf key below `schema`.
    fn walk(
        &self,
        schema: &Json,
        defaults: Option<&Value>,
        prefix: &str,
        visit: &mut dyn FnMut(&str, Option<&Value>, &str),
    ) {
        let Some(properties) = self.properties(schema) else { return };
        for (name, property) in properties {
            let key = join(prefix, name);
            let default = defaults.and_then(|d| d.get(name)).cloned().or_else(|| schema_default(property));
            if self.properties(property).is_some() {
                self.walk(property, default.as_ref(), &key, visit);
            } else if let Some(values) = self.map_values(property) {
                let map = map_kind(&key);
                let template = map.and_then(|m| (m.template)());
                let placeholder = map.map_or("<key>", |m| m.placeholder);
                self.walk(values, template.as_ref(), &join(&key, placeholder), visit);
            } else {
                visit(&key, default.as_ref(), &meaning(property));
                if let Some(items) = self.array_items(property) {
                    self.walk(items, None, &format!("{key}[]"), visit);
                }
            }
        }
    }

    /// Writes the keys below `schema` as TOML: values first, then sub-tables.
    fn render(&self, schema: &Json, defaults: Option<&Value>, path: &[String], out: &mut String) {
        let Some(properties) = self.properties(schema) else { return };
        let mut tables = Vec::new();
        for (name, property) in properties {
            let default = defaults.and_then(|d| d.get(name));
            if self.properties(property).is_some() || self.map_values(property).is_some() {
                tables.push((name, property, default));
                continue;
            }
            out.push('\n');
            comment(&meaning(property), out);
            match default.cloned().or_else(|| schema_default(property)) {
                Some(value) => out.push_str(&format!("{} = {}\n", toml_key(name), inline(&value))),
                None => out.push_str(&format!("# {} = (unset)\n", toml_key(name))),
            }
            if let Some(items) = self.array_items(property) {
                self.walk(items, None, "", &mut |key, default, meaning| {
                    let default = default.map(|v| format!(" Default: `{}`.", inline(v))).unwrap_or_default();
                    comment(&format!("- `{key}`: {meaning}{default}"), out);
                });
            }
        }
        for (name, property, default) in tables {
            let mut table_path = path.to_vec();
            table_path.push(name.clone());
            if let Some(values) = self.map_values(property) {
                self.render_map(&table_path, property, values, default, out);
                continue;
            }
            out.push('\n');
            comment(&meaning(property), out);
            out.push_str(&format!("[{}]\n", dotted(&table_path)));
            self.render(property, default, &table_path, out);
        }
    }

    /// A map of structs: each default entry as a table, or a commented example
    /// when there is none (registries).
    fn render_map(&self, path: &[String], property: &Json, values: &Json, defaults: Option<&Value>, out: &mut String) {
        let entries = defaults.and_then(Value::as_table).filter(|t| !t.is_empty());
        let map = map_kind(&path.join("."));
        let placeholder = map.map_or("<key>", |m| m.placeholder);
        out.push('\n');
        comment(&meaning(property), out);
        let Some(entries) = entries else {
            let mut example = String::new();
            let mut table_path = path.to_vec();
            table_path.push(placeholder.to_string());
            example.push_str(&format!("[{}]\n", dotted(&table_path)));
            let template = map.and_then(|m| (m.template)());
            self.render(values, template.as_ref(), &table_path, &mut example);
            for line in example.lines() {
                out.push_str(if line.is_empty() || line.starts_with('#') { "" } else { "# " });
                out.push_str(line);
                out.push('\n');
            }
            return;
        };
        for (name, entry) in entries {
            let mut table_path = path.to_vec();
            table_path.push(name.clone());
            out.push_str(&format!("[{}]\n", dotted(&table_path)));
            self.render(values, Some(entry), &table_path, out);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// What the schema says a field defaults to (a `serde(default = ...)`),
/// unless that is nothing.
fn schema_default(schema: &Json) -> Option<Value> {
    let default = schema.get("default").filter(|d| !d.is_null())?;
    Value::try_from(default).ok()
}

/// A doc comment as one line: rustdoc wraps, the reference does not.
fn meaning(schema: &Json) -> String {
    let text = schema.get("description").and_then(Json::as_str).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + word.len() + 1 > 78 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

/// A value as it is written after `key = `.
fn inline(value: &Value) -> String {
    match value {
        Value::Table(table) if table.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn toml_key(name: &str) -> String {
    let bare = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_string() } else { Value::String(name.to_string()).to_string() }
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|p| toml_key(p)).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_HANDLER;

    #[test]
    fn every_key_has_a_meaning() {
        let keys = keys();
        assert!(keys.len() > 30, "{keys:?}");
        for key in &keys {
            assert!(!key.meaning.is_empty(), "`{}` has no doc comment", key.key);
        }
        let find = |name: &str| keys.iter().find(|k| k.key == name).unwrap_or_else(|| panic!("no `{name}`"));
        assert_eq!(find("socket").default, Some(Value::String("/run/berth/berth.sock".into())));
        assert_eq!(find("cni.plugin_timeout").default, Some(Value::String("1m".into())));
        assert_eq!(find("runtime.handlers.<name>.type").default, Some(Value::String("oci".into())));
        assert_eq!(find("runtime.handlers.<name>.root").default, None);
        assert!(find("registries.<host>.mirrors").meaning.contains("mirror"));
    }

    #[test]
    fn the_default_file_loads_as_the_defaults() {
        let text = default_file();
        let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, Config::default());
        assert!(text.contains(&format!("[runtime.handlers.{DEFAULT_HANDLER}]")), "{text}");
        assert!(text.contains("# [registries.\"<host>\"]"), "{text}");
    }

    #[test]
    fn every_key_is_in_the_default_file_with_its_meaning() {
        let text = default_file();
        let flat: String = text.lines().filter_map(|l| l.strip_prefix("# ")).collect::<Vec<_>>().join(" ");
        for key in keys() {
            assert!(flat.contains(&key.meaning), "the default file lacks the meaning of `{}`", key.key);
        }
    }

    #[test]
    fn readme_table_matches_the_structs() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from the config structs; it should read:\n\n{table}"
        );
    }
}
