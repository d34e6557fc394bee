//! The module map of STYLE.md §5 as a check: a module may use only modules
//! of lower layers (plus the exceptions the map notes). Reads `crate::…`
//! paths in the source, so a new upward dependency fails here.

use std::path::Path;

/// Layer of each top-level module, lowest first (src/lib.rs says the same).
const LAYERS: &[(&str, u8)] = &[
    ("job", 0),
    ("config", 0),
    ("protocol", 0),
    ("error", 0),
    ("store", 1),
    ("process", 1),
    ("files", 1),
    ("net", 1),
    ("notify", 2),
    ("kinds", 3),
    ("worker", 4),
    ("api", 4),
    ("lifecycle", 5),
];

/// Uses across the same layer that the map allows.
const ALLOWED: &[(&str, &str)] = &[
    // The API queues and stops jobs through the workers' handle.
    ("api", "worker"),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut wrong = vec![];
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = rel.split(['/', '.']).next().unwrap().to_owned();
        let Some(own) = layer(&module) else { continue }; // lib.rs, main.rs
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("crate::{"),
            "{rel}: list crate paths one by one so this check sees them"
        );
        for (i, _) in text.match_indices("crate::") {
            let used: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let Some(theirs) = layer(&used) else { continue }; // crate::shorten and the like
            let allowed = used == module
                || theirs < own
                || ALLOWED.contains(&(module.as_str(), used.as_str()));
            if !allowed {
                wrong.push(format!(
                    "{rel}: {module} (layer {own}) uses {used} (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways uses:\n{}",
        wrong.join("\n")
    );
}
