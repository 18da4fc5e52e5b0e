//! Issue 15 E18: dependencies between the top-level modules of `src/` point one way
//! (no cycles), and `url` is a leaf that uses nothing of ours. Read from the
//! sources: every `crate::<module>` outside comments and `#[cfg(test)]` modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without comments and without a trailing `#[cfg(test)] mod tests`.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// `module -> modules it names`, for the top-level modules of src/.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            // Test-only files (`tests.rs`, `*_tests.rs`) may use anything.
            files.retain(|f| !f.file_stem().unwrap().to_string_lossy().ends_with("tests"));
            modules.insert(name, files);
        } else if name != "lib" && name != "main" {
            modules.insert(name, vec![path]);
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, files) in &modules {
        let mut deps = BTreeSet::new();
        for file in files {
            let code = code_of(file);
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + 7..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    deps.extend(group.split(',').map(|p| p.trim().split("::").next().unwrap_or("").to_owned()));
                } else {
                    deps.insert(
                        rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_owned(),
                    );
                }
            }
        }
        deps.retain(|d| d != module && names.contains(d));
        graph.insert(module.clone(), deps);
    }
    graph
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = graph();
    assert!(graph.contains_key("request") && graph.contains_key("cache"), "{graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn url_is_a_leaf() {
    let graph = graph();
    assert_eq!(graph.get("url").map(BTreeSet::len), Some(0), "url depends on {:?}", graph.get("url"));
}
