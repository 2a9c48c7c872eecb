//! Architecture invariants that the compiler does not check: within every crate of the
//! workspace, no module imports a module that imports it back (directly or around a
//! longer circle), and the crate stack has no arrow up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`None` for the crate root).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Top-level modules each top-level module uses through `crate::` paths (tests
/// excluded: they may reach anywhere).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(src, &file) else { continue };
        let text = std::fs::read_to_string(&file).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let used: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::{...}` or an item of the crate root: the root declares every module
            // and re-exports, so a module reaching into it hides a circle.
            assert!(
                !used.is_empty() && !used.starts_with(|c: char| c.is_ascii_uppercase()),
                "{} uses the crate root (crate::{}...): name the module instead",
                file.display(),
                rest.chars().take(20).collect::<String>()
            );
            if used != module {
                deps.insert(used);
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    for krate in ["sfwire", "sfsim", "salesforce", "tripline"] {
        let graph = module_graph(&crates_dir().join(krate).join("src"));
        assert!(graph.len() > 2, "{krate}: modules found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate}: modules import each other: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_crate_stack_has_no_arrow_up() {
    let dependencies = |krate: &str| {
        let manifest = std::fs::read_to_string(crates_dir().join(krate).join("Cargo.toml")).expect("manifest");
        let normal = manifest.split("[dependencies]").nth(1).unwrap_or_default();
        let normal = normal.split("\n[").next().unwrap_or_default().to_owned();
        ["sfwire", "sfsim", "salesforce", "tripline"]
            .into_iter()
            .filter(|c| normal.lines().any(|l| l.starts_with(&format!("{c}.")) || l.starts_with(&format!("{c} "))))
            .collect::<Vec<_>>()
    };
    assert_eq!(dependencies("sfwire"), Vec::<&str>::new(), "sfwire is pure wire");
    assert_eq!(dependencies("sfsim"), ["sfwire"], "sfsim is only a Salesforce org");
    assert_eq!(dependencies("salesforce"), ["sfwire"], "the client knows nothing of the product");
    let client = std::fs::read_to_string(crates_dir().join("salesforce/Cargo.toml")).expect("manifest");
    assert!(!client.contains("rusqlite") && !client.contains("axum"), "the client knows nothing of storage or serving");
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph).expect("circle"), ["a", "b", "c", "a"]);
}
