//! Configuration from the environment: every config key can also be set as
//! `IMGEDGE_` + its upper-snake path (`cache.size` → `IMGEDGE_CACHE_SIZE`,
//! `origin` → `IMGEDGE_ORIGIN`), the way containers and systemd units pass settings.
//!
//! The precedence is flags > environment > file > defaults: [`overlay`] writes the
//! variables over the file's table before it is deserialized, and main.rs applies flags
//! last. Which dotted path a variable names is found by asking the config schema itself
//! (its `deny_unknown_fields` structs): each split of the name at underscores is tried,
//! and the one the schema accepts wins, so no second list of keys can drift from it.
//! Values are read as TOML (`4`, `true`, `["webp"]`, `[{kind = "extension", ...}]`) and
//! fall back to a plain string (`2GiB`, `0.0.0.0:8080`).

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The prefix of every configuration variable.
pub const PREFIX: &str = "IMGEDGE_";

/// Variables with this prefix that are read by their own code, not as config paths: the
/// flags' env forms (clap) and `IMGEDGE_ADMIN_ACCESS_KEYS` (its `id:secret,...` form).
const OWN_VARIABLES: &[&str] = &["IMGEDGE_DECODED_CACHE_SIZE", "IMGEDGE_PURGE_TOKEN", "IMGEDGE_ADMIN_ACCESS_KEYS"];

/// What [`overlay`] did besides writing values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// `IMGEDGE_*` variables that name no config key (warned about at start-up).
    pub unknown: Vec<String>,
    /// `(variable, dotted path)` for every variable applied.
    pub applied: Vec<(String, String)>,
}

/// Writes every `IMGEDGE_*` variable of `vars` into `table` (the parsed config file, or an
/// empty table), checked against the schema `T`.
///
/// # Errors
/// A variable that names a key but whose value the key does not accept, naming both.
pub fn overlay<T: DeserializeOwned>(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Overlay, String> {
    let mut report = Overlay::default();
    let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(name, _)| name.starts_with(PREFIX)).collect();
    vars.sort();
    for (name, raw) in vars {
        if OWN_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let tokens: Vec<String> = name[PREFIX.len()..].split('_').map(str::to_ascii_lowercase).collect();
        match resolve::<T>(&tokens, &raw)? {
            Some((path, value)) => {
                set(table, &path, value);
                report.applied.push((name, path.join(".")));
            }
            None => report.unknown.push(name),
        }
    }
    Ok(report)
}

/// The dotted path and typed value `tokens` name in schema `T`, if any.
fn resolve<T: DeserializeOwned>(tokens: &[String], raw: &str) -> Result<Option<(Vec<String>, Value)>, String> {
    if tokens.iter().any(String::is_empty) || tokens.len() > 12 {
        return Ok(None);
    }
    let candidates = values(raw);
    let mut rejected: Option<(Vec<String>, String)> = None;
    // Each of the 2^(n-1) splits: bit i set = a path separator after token i.
    for splits in 0u32..(1 << (tokens.len() - 1)) {
        let path = segments(tokens, splits);
        let mut known = false;
        for value in &candidates {
            let mut probe = Table::new();
            set(&mut probe, &path, value.clone());
            match Value::Table(probe).try_into::<T>() {
                Ok(_) => return Ok(Some((path, value.clone()))),
                Err(e) if is_unknown_key(&e.to_string()) => {}
                Err(e) => {
                    known = true;
                    rejected.get_or_insert_with(|| (path.clone(), e.to_string()));
                }
            }
        }
        if known {
            break;
        }
    }
    match rejected {
        Some((path, why)) => {
            Err(format!("{}: {} (key {})", tokens.join("_").to_uppercase(), why.trim(), path.join(".")))
        }
        None => Ok(None),
    }
}

/// The path for one split pattern of the tokens.
fn segments(tokens: &[String], splits: u32) -> Vec<String> {
    let mut path = vec![tokens[0].clone()];
    for (i, token) in tokens.iter().enumerate().skip(1) {
        if splits & (1 << (i - 1)) != 0 {
            path.push(token.clone());
        } else if let Some(last) = path.last_mut() {
            last.push('_');
            last.push_str(token);
        }
    }
    path
}

/// The value read as TOML first (numbers, booleans, arrays, inline tables), then as text.
fn values(raw: &str) -> Vec<Value> {
    let mut out = Vec::with_capacity(2);
    if let Ok(mut parsed) = format!("v = {raw}").parse::<Table>() {
        if let Some(v) = parsed.remove("v") {
            out.push(v);
        }
    }
    out.push(Value::String(raw.to_owned()));
    out
}

fn is_unknown_key(message: &str) -> bool {
    message.contains("unknown field")
}

/// Sets `path` in `table`, creating (or replacing non-table) intermediate tables.
fn set(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = table;
    for key in parents {
        let entry = cur.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Config;

    fn apply(vars: &[(&str, &str)]) -> Result<(Config, Overlay), String> {
        let mut table = Table::new();
        let report = overlay::<Config>(&mut table, vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))?;
        Ok((Value::Table(table).try_into::<Config>().map_err(|e| e.to_string())?, report))
    }

    #[test]
    fn variables_name_nested_keys_in_upper_snake_case() {
        let (config, report) = apply(&[
            ("IMGEDGE_ORIGIN", "/srv/media"),
            ("IMGEDGE_CACHE_SIZE", "2GiB"),
            ("IMGEDGE_CACHE_MAX_OBJECT_SIZE", "1MiB"),
            ("IMGEDGE_WORKERS_THREADS", "3"),
            ("IMGEDGE_ACCESS_LOG", "false"),
            ("IMGEDGE_AUTO_FORMAT", "[\"webp\"]"),
            ("IMGEDGE_LISTEN", "0.0.0.0:9000"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(config.origin, "/srv/media");
        assert_eq!(config.cache.size, 2 << 30);
        assert_eq!(config.cache.max_object_size, 1 << 20);
        assert_eq!(config.workers.threads, 3);
        assert!(!config.access_log);
        assert_eq!(config.auto_format, vec!["webp".to_owned()]);
        assert_eq!(config.listen.port(), 9000);
        assert!(report.applied.contains(&("IMGEDGE_CACHE_MAX_OBJECT_SIZE".into(), "cache.max_object_size".into())));
        assert!(report.unknown.is_empty());
    }

    #[test]
    fn arrays_of_tables_are_inline_toml() {
        let (config, _) =
            apply(&[("IMGEDGE_CACHE_TTL_RULES", r#"[{kind = "extension", value = "jpg", ttl_secs = 60}]"#)]).unwrap();
        assert_eq!(config.cache.ttl_rules.len(), 1);
        assert_eq!(config.cache.ttl_rules[0].ttl_secs, 60);
    }

    #[test]
    fn unknown_variables_are_reported_by_name_and_bad_values_fail() {
        let (_, report) =
            apply(&[("IMGEDGE_CACHE_SIZ", "1"), ("IMGEDGE_NOPE", "x"), ("IMGEDGE_PURGE_TOKEN", "t")]).unwrap();
        assert_eq!(report.unknown, vec!["IMGEDGE_CACHE_SIZ".to_owned(), "IMGEDGE_NOPE".to_owned()]);
        let err = apply(&[("IMGEDGE_WORKERS_THREADS", "many")]).unwrap_err();
        assert!(err.contains("WORKERS_THREADS") && err.contains("workers.threads"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut table: Table = "origin = \"/from/file\"\n[cache]\nsize = \"1MiB\"\n".parse().unwrap();
        overlay::<Config>(&mut table, [("IMGEDGE_CACHE_SIZE".to_owned(), "3MiB".to_owned())]).unwrap();
        let config: Config = Value::Table(table).try_into().unwrap();
        assert_eq!(config.origin, "/from/file");
        assert_eq!(config.cache.size, 3 << 20);
    }
}
